"""Instructor side: autograde every submission and summarise where the class struggles."""

import copy
import logging
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from sqlalchemy.exc import SAWarning
from traitlets import Bool, Int

from tito.export import NotebookError, read_notebook
from tito.release import nbgrader_api

# nbgrader's gradebook ORM warns about its own session handling on every autograde: nothing an
# instructor can act on, and it buries the lines that matter.
warnings.filterwarnings("ignore", category=SAWarning)


class _ExpectedChecksumChange(logging.Filter):
    """nbgrader warns, for every test cell with hidden tests, that the submitted cell's checksum
    differs from the instructor's: expected (the student never saw the hidden part), and nbgrader
    restores the instructor's cell either way. One warning per hidden test buries real problems."""

    def filter(self, record):
        return not (record.msg.startswith("Attribute '%s' for cell") and record.args and record.args[0] == "checksum")


for _logger in ["AutogradeApp", "NbGraderAPI", "traitlets"]:
    logging.getLogger(_logger).addFilter(_ExpectedChecksumChange())


class GradingExecute(Execute):
    """nbgrader's Execute step, made safe for grading TinyTorch.

    A module notebook:
    - runs as the course wrote it, with the student's answers in it: the instructor's notebook from
      source/, each solution cell replaced by the student's. Cells the student added are shown but
      not run, and a course cell the student edited runs as the course wrote it: no cell of theirs
      outside the solution cells (an IPython hook, a patched checker) can reach the tests.
    - Each solution cell is read before it runs (tito.integrity.scan); one that reaches into the
      testing machinery is not run, and its reason is shown there and recorded for the instructor.
      After every cell the kernel's testing machinery is fingerprinted by the grader's own code; a
      change fails every later test, with the reason.
    - Its tinytorch (the earlier modules) is a package the grader exported beforehand from the
      reference solutions: the kernel never sees an instructor notebook.
    - The kernel starts in an empty folder, so no file shipped beside a submission can shadow a
      course module.
    A milestone's judge cell is not run in the student's kernel, where any earlier cell could have
    patched the judge: the judge runs here, in the grader's process, on a package exported from the
    student's submitted notebooks, and its verdict becomes the cell's output. The other cells of a
    milestone notebook do not count, so they are not run either.
    A crashed kernel (os._exit, a segfault, out of memory) still leaves a graded notebook: the cell
    that crashed it and every code cell after it get an error output, so their tests score zero
    instead of the whole submission failing to grade (or unexecuted test cells counting as passed).
    """

    sandbox = Bool(False, help="start each kernel in a bubblewrap sandbox with the limits below").tag(config=True)
    memory_mb = Int(4096, help="a kernel's address space").tag(config=True)
    processes = Int(64, help="processes and threads of a kernel").tag(config=True)
    file_mb = Int(200, help="the largest file a kernel may write").tag(config=True)
    tmp_mb = Int(256, help="a kernel's private /tmp").tag(config=True)
    which_module = Bool(
        True,
        help="after a milestone fails below its threshold, find the student's module at fault with short trainings",
    ).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        from tito.course import MODULES, milestones, prerequisites
        from tito.notebook import PACKAGE_ENV, build_tinytorch

        self._crashed_in = self._tampered = self._baseline = None
        self._skip, self._flagged = {}, {}
        student, assignment = resources["nbgrader"]["student"], resources["nbgrader"]["assignment"]
        self._judge = next((m for m in milestones() if m.assignment == assignment), None)
        self._cwd = tempfile.mkdtemp(prefix="tinytorch-kernel-")
        resources.setdefault("metadata", {})["path"] = self._cwd
        readable = []
        nb.metadata["tito"] = {"integrity": []}  # the grader's flags only: whatever the submission held is replaced
        if assignment in MODULES:
            self._as_the_course_wrote_it(nb, self._instructor_notebook(assignment, resources))
            package = Path(self._cwd) / "reference"  # code only: the earlier modules' reference solutions
            package.mkdir()
            os.chmod(self._cwd, 0o755)  # read by the sandboxed kernel's own uid
            build_tinytorch(self._source_folder(), prerequisites(assignment), package)
            os.environ[PACKAGE_ENV] = str(package)
            readable.append(package)
        else:
            self._notebooks = self.notebooks_for(student, assignment)
        if self.sandbox:
            self.kernel_manager_class = self._sandboxed(readable)
        self._nb = nb
        try:
            return super().preprocess(nb, resources, km)
        finally:
            os.environ.pop(PACKAGE_ENV, None)
            shutil.rmtree(self._cwd, ignore_errors=True)

    def _source_folder(self):
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        return Path(coursedir.format_path(coursedir.source_directory, ".", ".")).resolve()

    def _instructor_notebook(self, assignment, resources):
        return read_notebook(self._source_folder() / assignment / f"{resources['nbgrader']['notebook']}.ipynb")

    def _as_the_course_wrote_it(self, nb, instructor):
        """nb's cells become the instructor's, with the student's solution cells (see the class)."""
        from tito.integrity import course_libraries, scan

        def grade_id(cell):
            return cell.metadata.get("nbgrader", {}).get("grade_id")

        theirs = {grade_id(c): c for c in nb.cells if grade_id(c)}
        ours_ids = ({grade_id(c) for c in instructor.cells} | {c.get("id") for c in instructor.cells}) - {None}
        libraries = course_libraries(instructor)
        cells, after = [], {}  # after: the student's own cells, keyed by the course cell they follow
        previous = None
        for cell in nb.cells:
            if grade_id(cell) in ours_ids or cell.get("id") in ours_ids:
                previous = grade_id(cell) or cell.get("id")
            else:
                after.setdefault(previous, []).append(cell)
        for cell in after.pop(None, []):
            cells.append(self._not_run(cell))
        for ours in instructor.cells:
            gid = grade_id(ours)
            if gid and _is_solution(ours):
                cell = theirs.get(gid)
                if cell is None or not _is_solution(cell):
                    cell = copy.deepcopy(ours)
                    cell.source = (
                        'raise NotImplementedError("this solution cell is missing from the submitted notebook")'
                    )
                elif cell.cell_type == "code":
                    findings = scan(cell.source, *libraries)
                    if findings:
                        self._flagged[id(cell)] = findings
            else:
                cell = theirs.get(gid) if gid in theirs else copy.deepcopy(ours)
            cells.append(cell)
            for extra in after.pop(gid or ours.get("id"), []):
                cells.append(self._not_run(extra))
        nb.cells = cells

    def _not_run(self, cell):
        self._skip[id(cell)] = True
        if cell.cell_type == "code":
            cell.outputs = [
                NotebookNode(
                    output_type="stream",
                    name="stdout",
                    text="Not run when graded: a cell you added. Only the course's cells and your solution "
                    "cells run in grading, so put everything your solutions need inside the solution cells.\n",
                )
            ]
        return cell

    async def async_start_new_kernel_client(self):
        client = await super().async_start_new_kernel_client()
        if self.sandbox:  # the kernel has made its sockets: from now on it writes only to its capped /tmp
            from tito.sandbox import lock

            lock(self._cwd)
        return client

    def _sandboxed(self, readable):
        """The kernel sees the course's code, the data and the reference package of the modules this
        one builds on, and works in its own private /tmp; nothing else."""
        from tito.sandbox import course_code, job_slot, kernel_manager

        readable = course_code() + readable
        if os.environ.get("TINYTORCH_DATA"):
            readable.append(Path(os.environ["TINYTORCH_DATA"]))
        return kernel_manager(self._cwd, readable, self._limits(), job_slot())

    def _limits(self):
        """The sandbox limits of nbgrader_config.py, or None when the sandbox is off."""
        from tito.sandbox import Limits

        if not self.sandbox:
            return None
        return Limits(self.memory_mb, self.processes, self.file_mb, self.tmp_mb, cpu_s=3600, wall_s=3600)

    def notebooks_for(self, student, assignment):
        """The folder of the student's submitted notebooks, which a milestone's tinytorch is built from
        (as nbgrader is configured)."""
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        return Path(coursedir.format_path(coursedir.submitted_directory, student, assignment)).resolve().parent

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._judge:  # a milestone: only the judge counts, so no cell runs in the student's kernel
            if cell.metadata.get("nbgrader", {}).get("grade_id") == self._judge_cell()["judge_cell"]:
                cell.outputs = self._run_judge()
            return cell, resources
        if id(cell) in self._skip:
            return cell, resources
        if self._crashed_in is not None:
            cell.outputs.append(
                _error_output("KernelCrashed", f"not run: the kernel crashed in cell {self._crashed_in + 1}")
            )
            return cell, resources
        if self._tampered is not None:
            cell.outputs = [_error_output("IntegrityError", f"not counted: {self._tampered}")]
            return cell, resources
        findings = self._flagged.get(id(cell))
        if findings:
            self._record(cell, findings)
            cell.outputs = [
                _error_output(
                    "IntegrityError",
                    "this solution cell was not run when graded: it reaches into the machinery the tests "
                    "check with, which no solution needs. Your instructor will review it.\n  "
                    + "\n  ".join(map(str, findings)),
                )
            ]
            return cell, resources
        if _is_solution(cell) and self._baseline is None:
            self._baseline = self._fingerprint()
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._crashed_in = index
            message = "the kernel crashed while running this cell (os._exit, a segfault, or out of memory)"
            cell.outputs.append(_error_output("KernelCrashed", message))
            return cell, resources
        if self._baseline is not None:
            from tito.integrity import changed

            what = changed(self._baseline, self._fingerprint())
            if what:
                number = index + 1
                self._tampered = f"cell {number} changed the machinery the tests check with ({', '.join(what[:5])})"
                self._record(cell, [f"changed {', '.join(what[:5])} while it ran"])
                cell.outputs.append(_error_output("IntegrityError", self._tampered + "; later tests are not counted"))
        return cell, resources

    def _record(self, cell, findings):
        """Note a flagged cell in the graded notebook's metadata, where tito's report finds it."""
        where = cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id")
        self._nb.metadata.setdefault("tito", {}).setdefault("integrity", []).append(
            {"cell": where, "findings": [str(f) for f in findings]}
        )

    def _fingerprint(self):
        """The kernel's testing machinery, fingerprinted by code the grader sends (not a notebook cell)."""
        from jupyter_core.utils import run_sync

        from tito.integrity import FINGERPRINT

        out = []

        def keep(msg):
            if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
                out.append(msg["content"]["text"])

        try:
            run_sync(self.kc.execute_interactive)(
                FINGERPRINT, store_history=False, allow_stdin=False, output_hook=keep, timeout=60
            )
        except Exception as err:  # a kernel that no longer answers the grader
            return f"no answer ({type(err).__name__})"
        return "".join(out).strip()

    def _judge_cell(self):
        return self._judge.judge_file().CONFIG["notebook"]

    def _run_judge(self):
        """Judge the submitted notebooks in the grader's process; the outputs the judge cell shows."""
        from milestones.judge import BelowThreshold, MilestoneFailure, judge_notebooks

        model_id = self._judge_cell()["model_cell"]
        model = [c.source for c in self._nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == model_id]
        lines = [
            "Judged by the grader in a fresh process, with the modules in your submitted notebooks.",
            "(When grading, only this check runs; the notebook's other cells are for you.)",
        ]
        outputs = []
        try:
            if not model:
                raise MilestoneFailure(f"the notebook has no cell with grade_id {model_id!r} (build_model).")
            judge_notebooks(
                self._judge.judge_file(),
                self._notebooks,
                self._judge.requires,
                model[0],
                log=lines.append,
                sandbox=self._limits(),
                reference=self._source_folder(),  # the course's layers judge the weights, never the student's
            )
        except BelowThreshold as err:
            outputs.append(_error_output("MilestoneFailure", str(err) + self._which_module(model[0])))
        except MilestoneFailure as err:
            outputs.append(_error_output("MilestoneFailure", str(err)))
        return [NotebookNode(output_type="stream", name="stdout", text="\n".join(lines) + "\n"), *outputs]

    def _which_module(self, model_source):
        """The diagnosis after a below-threshold failure (milestones.diagnosis), recorded in the graded
        notebook's metadata for the report; the text the student is shown, or ""."""
        from milestones.diagnosis import module_at_fault

        if not self.which_module:
            return ""
        module, verdict = module_at_fault(
            self._judge.judge_file(),
            self._notebooks,
            self._source_folder(),
            self._judge.requires,
            model_source,
            sandbox=self._limits(),
            log=lambda *_: None,
        )
        if module:
            self._nb.metadata["tito"]["at_fault"] = module
        return f"\n\n{verdict}" if verdict else ""


def _is_solution(cell):
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def _error_output(ename, message):
    return NotebookNode(output_type="error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])


def grading_preprocessors():
    """nbgrader's default autograde steps with Execute swapped for GradingExecute."""
    from nbgrader.converters import Autograde

    default = Autograde.class_traits()["autograde_preprocessors"].default()
    return [GradingExecute if step is Execute else step for step in default]


@dataclass
class Outcome:
    student: str
    assignment: str
    graded: bool
    score: float = 0.0
    max_score: float = 0.0
    message: str = ""


def _why_it_failed(submission, log):
    """One line an instructor can act on: an unreadable notebook, else the last error nbgrader logged."""
    for nb in sorted(Path(submission).glob("*.ipynb")):
        try:
            read_notebook(nb)
        except NotebookError as err:
            return str(err)
    errors = re.findall(r"^\s*(?:\[\w+\] )?([\w.]*(?:Error|Exception)\b.*|No \w+ .*exists.*)$", log, flags=re.M)
    return errors[-1].strip() if errors else "nbgrader could not autograde it"


def autograde(root, assignments=None, students=None, register=True):
    """Autograde each submitted/<student>/<assignment>; one bad submission never stops the others.

    Assignments missing from the gradebook (a fresh clone has none) are registered first, from
    source/ (register=False: the caller did). When nbgrader fails on a submission, its log is kept
    in logs/autograde/.
    """
    from nbgrader.api import Gradebook

    from tito.release import register_assignments

    root = Path(root)
    api = nbgrader_api(root)
    submitted = Path(api.coursedir.format_path(api.coursedir.submitted_directory, ".", ".")).resolve()
    work = [
        (student_dir.name, sub)
        for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir())
        if not students or student_dir.name in students
        for sub in sorted(p for p in student_dir.iterdir() if p.is_dir())
        if not assignments or sub.name in assignments
    ]
    if register:
        register_assignments(root, sorted({sub.name for _, sub in work}))
    outcomes = []
    for student, sub in work:
        result = api.autograde(sub.name, student, force=True, create=True)
        outcomes.append(Outcome(student, sub.name, bool(result["success"])))
        if not result["success"]:
            log = root / "logs" / "autograde" / student / f"{sub.name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(result.get("log") or "")
            outcomes[
                -1
            ].message = f"{_why_it_failed(sub, result.get('log') or '')} (nbgrader's log: {log.relative_to(root)})"
    with Gradebook(api.coursedir.db_url) as gb:
        for o in outcomes:
            if o.graded:
                s = gb.find_submission(o.assignment, o.student)
                o.score, o.max_score = s.score, s.max_score
    return outcomes


def integrity_flags(root, outcomes):
    """Lines naming every graded submission whose notebook the grader flagged (tito.integrity): the
    cell and what it reached for. Read from the autograded notebooks, which only the grader writes."""
    coursedir = nbgrader_api(root).coursedir
    lines = []
    for o in outcomes:
        if not o.graded:
            continue
        folder = Path(coursedir.format_path(coursedir.autograded_directory, o.student, o.assignment))
        for path in sorted(folder.glob("*.ipynb")):
            try:
                flags = read_notebook(path).metadata.get("tito", {}).get("integrity", [])
            except NotebookError:
                continue
            for flag in flags:
                lines.append(f"  {o.student:<16} {o.assignment:<16} cell {flag['cell']}: {'; '.join(flag['findings'])}")
    if lines:
        lines.insert(
            0, "⚑ Flagged for review: code that reaches into the testing machinery (not run, its tests scored 0):"
        )
    return lines


def modules_at_fault(root):
    """{milestone: {module: failures}} from every autograded milestone notebook the diagnosis named a
    module in (milestones.diagnosis; "build_model" when the model itself was at fault)."""
    from tito.course import milestones

    coursedir = nbgrader_api(root).coursedir
    autograded = Path(coursedir.format_path(coursedir.autograded_directory, ".", ".")).resolve()
    students = sorted(p.name for p in autograded.iterdir() if p.is_dir()) if autograded.is_dir() else []
    counts = {}
    for m, student in ((m, s) for m in milestones() for s in students):
        folder = Path(coursedir.format_path(coursedir.autograded_directory, student, m.assignment))
        for path in sorted(folder.glob("*.ipynb")):  # written by the grader only
            try:
                module = read_notebook(path).metadata.get("tito", {}).get("at_fault")
            except NotebookError:
                continue
            if module:
                counts.setdefault(m.assignment, {}).setdefault(module, 0)
                counts[m.assignment][module] += 1
    return counts


def summary(outcomes):
    """Every graded submission's mark, or why it could not be graded (the class as a whole is in
    tito.report)."""
    lines = []
    for o in outcomes:
        mark = f"{o.score:g}/{o.max_score:g}" if o.graded else "NOT GRADED"
        lines.append(f"  {o.student:<16} {o.assignment:<16} {mark:>10}  {o.message}")
    return lines
