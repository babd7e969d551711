"""tito: the course's command line (export, module complete, milestones, release)."""

import argparse
import importlib
import os
import sys
from pathlib import Path

from tito import course
from tito.course import MODULES, notebook_path
from tito.workspace import Progress, find_workspace, is_reference, package_dir


def say(text=""):
    print(text, flush=True)


def present_modules(workspace):
    return [m for m in MODULES if notebook_path(workspace, m).exists()]


# ---------------------------------------------------------------- export
def cmd_export(args):
    from tito.export import export

    workspace = find_workspace(args.workspace)
    modules = present_modules(workspace)
    package, report = export(workspace, modules, package_dir(workspace))
    say(f"Exported {len(modules)} notebook(s) from {workspace} into {package}")
    return 0 if _print_report(report) else 1


def _print_report(report):
    from tito.export import describe

    say("\n".join(describe(report)))
    return not any(report.values())


# ---------------------------------------------------------------- module complete
def cmd_module_complete(args):
    from tito.checking import run_checks
    from tito.export import NotebookError, export

    workspace = find_workspace(args.workspace)
    module = course.module_name(args.module)
    nb = notebook_path(workspace, module)
    if not nb.exists():
        say(f"{module}: notebook not found at {nb}. Fetch the assignment first.")
        return 1
    progress = Progress(workspace)

    say("1. Exporting your notebooks into tinytorch ...")
    package, report = export(workspace, present_modules(workspace), package_dir(workspace))
    exported_ok = _print_report({module: report[module]})

    say(f"2. Running the tests in {nb.name} (this runs the whole notebook) ...")
    try:
        results, setup_error = run_checks(nb)
    except NotebookError as err:
        say(f"   {err}")
        return 1
    for r in results:
        say(f"   {'✓' if r.passed else '✗'} {r.grade_id}" + ("" if r.passed else f"  — {r.error}"))
    passed = sum(r.passed for r in results)
    if setup_error:
        say(f"   note: {setup_error.where} raised {setup_error.error}")

    say(f"3. Importing {module} from your tinytorch package ...")
    import_error = _import_check(package.parent, module, workspace)
    say("   ✓ imports cleanly" if not import_error else f"   ✗ {import_error}")

    if not (exported_ok and not import_error and results and passed == len(results)):
        progress.uncomplete_module(module)
        say(
            f"\n{module} is not complete yet: {passed}/{len(results)} test cells pass. "
            "Fix what is marked ✗ above and run this command again."
        )
        return 1
    progress.complete_module(module, f"{passed}/{len(results)} test cells")
    say(f"\n🎉 {module} complete: {passed}/{len(results)} test cells pass, exported to {package}")

    for m in course.milestones():
        if m.trigger == module:
            missing = [r for r in m.requires if not progress.completed(r)]
            if missing:
                say(f"Milestone {m.number} ({m.name}) unlocks once these are complete too: {', '.join(missing)}")
            else:
                say(f"\n🔓 Milestone {m.number} unlocked: {m.name} — running its check now.")
                return _run_milestone(m, workspace, progress)
    return 0


def _import_check(build_dir, module, workspace):
    """Import the exported module in a fresh interpreter so a broken export shows up here, not later."""
    import subprocess

    from tito.export import export_notebook

    target = export_notebook(notebook_path(workspace, module), module).target
    code = f"import sys; sys.path.insert(0, {str(build_dir)!r}); import tinytorch.{target}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode:
        return proc.stderr.strip().splitlines()[-1]
    return ""


# ---------------------------------------------------------------- milestones
def _judge_module(m):
    judge = m.judge_file()
    if judge is None:
        raise SystemExit(
            f"Milestone {m.number} ({m.name}) arrives with {m.trigger}; it is not part of this release yet."
        )
    return judge


def _student_package(m, workspace):
    """Export the milestone's modules from the workspace; the package folder (problems printed)."""
    from tito.notebook import build_tinytorch

    missing = [r for r in m.requires if not notebook_path(workspace, r).exists()]
    if missing:
        raise SystemExit(f"Milestone {m.number} needs your notebooks for {', '.join(missing)} (looked in {workspace}).")
    package, report = build_tinytorch(workspace, m.requires)
    bad = {k: v for k, v in report.items() if v}
    if bad:
        _print_report(bad)
    return package


def _model_cell(m, workspace):
    """(source, None): the build_model cell of the student's milestone notebook, as the grader reads it
    (the cell with the grade id milestone.yml names); (None, why) when it is missing or not written yet."""
    import ast

    from tito.export import NotebookError, read_notebook

    cell_id = _judge_module(m).CONFIG["notebook"]["model_cell"]
    path = notebook_path(workspace, m.assignment)
    where = f"{m.assignment}/{path.name}"
    if not path.exists():
        return None, f"there is no {where} in {workspace}"
    try:
        cells = [c for c in read_notebook(path).cells if c.metadata.get("nbgrader", {}).get("grade_id") == cell_id]
    except NotebookError as err:
        return None, str(err)
    if not cells:
        return None, f"{where} has no build_model cell (grade id {cell_id!r})"
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, None  # the student's own cell: the judge names the error, as the grader will
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "build_model":
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            if len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0]):
                return None, f"the build_model cell of {where} is not written yet (it raises NotImplementedError)"
    return source, None


def _run_milestone(m, workspace, progress):
    from milestones.judge import MilestoneFailure, judge
    from tito.datasets import DatasetError

    judge_module = _judge_module(m)
    who = "the reference solutions" if is_reference(workspace) else "your tinytorch"
    model_source, no_model = _model_cell(m, workspace)
    say(f"Milestone {m.number}: {m.name} — {m.threshold}, trained with {who} in a fresh process.")
    default = judge_module.CONFIG["model"]["default"]
    if no_model:
        say(
            f"Note: {no_model}, so this checks your modules with the milestone's default model ({default}).\n"
            f"The grader judges your notebook's build_model cell, and a missing or unwritten one scores 0 there, "
            "so a pass here is not recorded as achieved."
        )
    else:
        say(f"Model: the build_model cell of {m.assignment}/{m.assignment}.ipynb, as the grader judges it.")

    def log(text):  # the judge's ACHIEVED banner would say what the grader will not
        say("(the default model passed the judge)" if no_model and "ACHIEVED" in text else text)

    try:
        result = judge(judge_module, _student_package(m, workspace), model_source, log=log, who=who)
    except DatasetError as err:  # nothing to do with the student's code
        say(f"\n✗ Milestone {m.number} could not run: its dataset is not available.\n  {err}")
        return 1
    except MilestoneFailure as err:  # the student's code failed or fell short: say where and why
        say(f"\n✗ Milestone {m.number} not achieved yet.\n{err}")
        return 1
    if no_model:
        say(
            f"\nYour modules pass Milestone {m.number} with the default model ({result.accuracy:.2%}), but the "
            f"milestone is not achieved yet: {no_model}. Write build_model there and run this again."
        )
        return 1
    progress.achieve(m.number, round(float(result.accuracy), 4), round(result.train_seconds, 1))
    return 0


def cmd_milestone_test(args):
    m = course.milestone(args.number)
    workspace = find_workspace(args.workspace)
    progress = Progress(workspace)
    not_done = [r for r in m.requires if not progress.completed(r)]
    if not_done and not is_reference(workspace):
        say(
            f"Note: not yet marked complete with `tito module complete`: {', '.join(not_done)}. "
            "Testing your current notebooks anyway."
        )
    return _run_milestone(m, workspace, progress)


def _state(m, progress):
    if progress.achieved(m.number):
        return "achieved"
    return "unlocked" if all(progress.completed(r) for r in m.requires) else "locked"


ICONS = {"achieved": "🏆", "unlocked": "🔓", "locked": "🔒"}


def cmd_milestone_status(args):
    workspace = find_workspace(args.workspace)
    progress = Progress(workspace)
    done = [m for m in MODULES if progress.completed(m)]
    say(f"Modules complete: {len(done)}/{len(MODULES)}" + (f" ({', '.join(done)})" if done else ""))
    for m in course.milestones():
        state = _state(m, progress)
        have = sum(progress.completed(r) for r in m.requires)
        say(f"\n{ICONS[state]} Milestone {m.number}: {m.name}  [{state}]  — {m.era}")
        say(f"   exercises {len(m.requires)} modules: {have}/{len(m.requires)} complete; triggered by {m.trigger}")
        if state == "achieved":
            a = progress.achieved(m.number)
            say(f"   achieved {a['achieved']}: accuracy {a['accuracy']:.2%} after {a['train_seconds']} s of training")
        if args.detailed:
            for r in m.requires:
                say(f"     {'✓' if progress.completed(r) else '✗'} module {r} complete")
            say(f"     {'✓' if state == 'achieved' else '✗'} {m.threshold}")
    return 0


def cmd_milestone_timeline(args):
    workspace = find_workspace(args.workspace)
    progress = Progress(workspace)
    ms = course.milestones()
    width = 26
    rows = [[], [], [], [], []]
    for m in ms:
        state = _state(m, progress)
        year = m.era.split(",")[-1].strip(" )")
        have = sum(progress.completed(r) for r in m.requires)
        detail = (
            f"{progress.achieved(m.number)['accuracy']:.1%}"
            if state == "achieved"
            else f"{have}/{len(m.requires)} modules"
        )
        rows[0].append(f"{year}".ljust(width, "─") if m is not ms[-1] else year)
        rows[1].append(f"{ICONS[state]} {m.era.split(' (')[0]}".ljust(width - 1))
        rows[2].append(m.name.ljust(width))
        rows[3].append(f"after {m.trigger}".ljust(width))
        rows[4].append(f"{state}: {detail}".ljust(width))
    say("Your journey through the history of AI\n")
    for row in rows:
        say("  " + "".join(row).rstrip())
    return 0


def cmd_milestone_demo(args):
    from milestones.checkpoint import checkpoint_path, load_checkpoint

    m = course.milestone(args.number)
    workspace = find_workspace(args.workspace)
    _judge_module(m)  # tells when the milestone is not in this release
    saved = checkpoint_path(m.number, workspace)
    if not args.terminal:
        from tito.demo import demo_notebook, open_in_jupyterlab

        if not saved.exists():
            say(
                f"No trained model for Milestone {m.number} yet: run the training cells of "
                f"milestone_{m.number}.ipynb once (they save it), then run this again.\n"
                f"Or `tito milestone demo {m.number} --terminal`, which trains one first."
            )
            return 1
        return open_in_jupyterlab(demo_notebook(m.number, m.name, workspace), open_browser=not args.no_browser)

    demo = importlib.import_module(
        f"milestones.{m.folder}.{sorted((course.MILESTONES_DIR / m.folder).glob('demo_*_milestone.py'))[0].stem}"
    )
    from tito.notebook import import_tinytorch

    tinytorch = import_tinytorch(_student_package(m, workspace))
    model = None
    if saved.exists():
        say(f"Your model as saved by milestone_{m.number}.ipynb ({saved.name}).")
        model = load_checkpoint(tinytorch, m.number, start=workspace)
    return demo.main(tinytorch, model=model) or 0


# ---------------------------------------------------------------- instructors
def cmd_grade(args):
    """Collect, autograde in parallel, feedback, grades CSV and the curriculum report, for a class."""
    from tito.class_grading import collect, dask_executor, export_grades, generate_feedback, grade_class
    from tito.grading import integrity_flags, modules_at_fault, summary
    from tito.release import nbgrader_api
    from tito.report import report
    from tito.sandbox import ALLOW_UNSANDBOXED, grading_problem

    root = Path(args.course).resolve()
    if not (root / "nbgrader_config.py").exists():
        say(f"{root} has no nbgrader_config.py: run this from the course root.")
        return 1
    if args.no_sandbox:  # the grading processes inherit it: nbgrader_config.py turns the sandbox off
        os.environ[ALLOW_UNSANDBOXED] = "1"
    problem = grading_problem(bool(nbgrader_api(root).config.GradingExecute.get("sandbox", False)))
    if problem and problem[0]:
        say(f"Not grading: {problem[1]}")
        return 1
    unsandboxed = [f"⚠ {problem[1]}"] if problem else []  # heads the summary and the report
    if unsandboxed:
        say(unsandboxed[0])
    notes = list(unsandboxed)
    if args.collect:
        collected = collect(root, args.assignment or [], args.collect)
        if collected:
            say("Collecting:\n" + "\n".join(f"  {line}" for line in collected))
            notes.append("While collecting, nbgrader warned (refused, skipped or replaced submissions):")
            notes += [f"  {line}" for line in collected]
    if not (root / "submitted").is_dir():
        say(f"{root} has no submitted/ folder: collect the submissions first (--collect exchange or zip).")
        return 1
    with dask_executor(args.dask, args.workers) as executor:
        outcomes, _ = grade_class(
            root, args.workers, args.assignment or None, args.student or None, args.force, executor, log=say
        )
    flagged = integrity_flags(root, outcomes)
    say("\n".join(summary(outcomes) + notes + flagged))
    graded = sorted({o.assignment for o in outcomes if o.graded})
    if graded and not args.no_feedback:
        generate_feedback(root, graded)
    say(f"\nGrades: {export_grades(root)}")
    lines = report(nbgrader_api(root).coursedir.db_url, root / "reports", unsandboxed + flagged, modules_at_fault(root))
    say("\n" + "\n".join(lines))
    return 0 if all(o.graded for o in outcomes) else 1


def cmd_release(args):
    from tito.release import generate_release

    root = Path(args.course).resolve()
    if not (root / "nbgrader_config.py").exists() or not (root / "source").is_dir():
        say(f"{root} has no nbgrader_config.py or no source/ folder: run this from the course root.")
        return 1
    return generate_release(root, root / "release")


INSTRUCTOR_TOOLS = ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"]


def cmd_view(args):
    """Show or hide nbgrader's instructor tools in JupyterLab (nbgrader's documented switches)."""
    import subprocess

    jupyter = str(Path(sys.executable).parent / "jupyter")
    action = "disable" if args.who == "student" else "enable"
    for command in [[jupyter, "labextension", action, f"--level={args.level}", tool] for tool in INSTRUCTOR_TOOLS]:
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode:
            say(proc.stdout + proc.stderr)
            return 1
    say(
        f"JupyterLab now shows the {args.who} view: Formgrader and Create Assignment are "
        f"{'hidden' if args.who == 'student' else 'shown'} (restart JupyterLab to see it)."
    )
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tito", description="TinyTorch course tool")
    parser.add_argument("--workspace", help="folder holding your module folders (default: here)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("export", help="export your notebooks into your tinytorch package").set_defaults(fn=cmd_export)

    module = sub.add_parser("module", help="module commands").add_subparsers(dest="action", required=True)
    complete = module.add_parser("complete", help="export, check and record a module (e.g. 05_dense)")
    complete.add_argument("module")
    complete.set_defaults(fn=cmd_module_complete)

    ms = sub.add_parser("milestone", help="milestone commands").add_subparsers(dest="action", required=True)
    test = ms.add_parser("test", help="train and judge a milestone with your tinytorch")
    test.add_argument("number", type=int, choices=[1, 2, 3])
    test.set_defaults(fn=cmd_milestone_test)
    demo = ms.add_parser("demo", help="a milestone's demo in JupyterLab, with the model its notebook saved")
    demo.add_argument("number", type=int, choices=[1, 2, 3])
    demo.add_argument("--no-browser", action="store_true", help="only print the demo's URL")
    demo.add_argument("--terminal", action="store_true", help="the text demo here (trains first if nothing is saved)")
    demo.set_defaults(fn=cmd_milestone_demo)
    status = ms.add_parser("status", help="modules done and milestones locked/unlocked/achieved")
    status.add_argument("--detailed", action="store_true", help="list every requirement")
    status.set_defaults(fn=cmd_milestone_status)
    ms.add_parser("timeline", help="the three eras, drawn").set_defaults(fn=cmd_milestone_timeline)

    grade = sub.add_parser("grade", help="instructors: autograde all submissions and summarise the class")
    grade.add_argument("--course", default=".", help="course root (holds nbgrader_config.py)")
    grade.add_argument("--assignment", action="append", help="only this assignment (repeatable)")
    grade.add_argument("--student", action="append", help="only this student (repeatable)")
    grade.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="submissions graded at once")
    grade.add_argument("--force", action="store_true", help="grade again what was graded and has not changed")
    grade.add_argument("--collect", choices=["exchange", "zip"], help="first collect from the exchange or an LMS zip")
    grade.add_argument("--no-feedback", action="store_true", help="do not generate feedback files")
    grade.add_argument(
        "--no-sandbox",
        action="store_true",
        help="grade without the sandbox (needed as root where bubblewrap is missing; students' code then runs as root)",
    )
    grade.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the grading jobs on a Dask cluster (its scheduler's address, or 'local' for one on this machine)",
    )
    grade.set_defaults(fn=cmd_grade)

    view = sub.add_parser("view", help="JupyterLab for students (instructor tools hidden) or instructors")
    view.add_argument("who", choices=["student", "instructor"])
    view.add_argument(
        "--level",
        choices=["sys_prefix", "user"],
        default="sys_prefix",
        help="this environment (default) or this user's Jupyter configuration",
    )
    view.set_defaults(fn=cmd_view)

    release = sub.add_parser(
        "release", help="instructors: regenerate release/ from source/ and register the assignments in the gradebook"
    )
    release.add_argument("--course", default=".", help="course root (holds nbgrader_config.py)")
    release.set_defaults(fn=cmd_release)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    course.keep_out_of_home(Path(args.workspace or Path.cwd()).resolve())
    try:
        code = args.fn(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `tito ... | head` closed the pipe: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
