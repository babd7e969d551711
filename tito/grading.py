"""Instructor side: autograde every submission and summarise where the class struggles."""

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

    - Each notebook's kernel starts in an empty folder, so no file shipped beside a submission can
      shadow a course module, and it learns from TINYTORCH_NOTEBOOKS where its tinytorch comes
      from: the reference solutions for a module, the student's own submissions for a milestone
      (folders read from the nbgrader configuration, not guessed from names).
    - A milestone's judge cell is not run in the student's kernel, where any earlier cell could
      have patched the judge: the judge runs here, in the grader's process, on a package exported
      from the student's submitted notebooks, and its verdict becomes the cell's output. The other
      cells of a milestone notebook (loading data, training for the student's own curiosity) do
      not count, so they are not run either: a class's milestones grade in the judge's time.
    - A crashed kernel (os._exit, a segfault, out of memory) still leaves a graded notebook: the cell
      that crashed it and every code cell after it get an error output, so their tests score zero
      instead of the whole submission failing to grade (or unexecuted test cells counting as passed).
    """

    sandbox = Bool(False, help="start each kernel in a bubblewrap sandbox with the limits below").tag(config=True)
    memory_mb = Int(4096, help="a kernel's address space").tag(config=True)
    processes = Int(64, help="processes and threads of a kernel").tag(config=True)
    file_mb = Int(200, help="the largest file a kernel may write").tag(config=True)
    tmp_mb = Int(256, help="a kernel's private /tmp").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        from tito.course import milestones
        from tito.notebook import NOTEBOOKS_ENV, OWNER_ENV

        self._crashed_in = None
        student, assignment = resources["nbgrader"]["student"], resources["nbgrader"]["assignment"]
        folder, owner = self.notebooks_for(student, assignment)
        os.environ[NOTEBOOKS_ENV], os.environ[OWNER_ENV] = str(folder), owner
        self._judge = next((m for m in milestones() if m.assignment == assignment), None)
        self._notebooks, self._owner = folder, owner
        self._cwd = tempfile.mkdtemp(prefix="tinytorch-kernel-")
        resources.setdefault("metadata", {})["path"] = self._cwd
        if self.sandbox:
            self.kernel_manager_class = self._sandboxed(assignment, folder)
        self._nb = nb
        try:
            return super().preprocess(nb, resources, km)
        finally:
            shutil.rmtree(self._cwd, ignore_errors=True)

    async def async_start_new_kernel_client(self):
        client = await super().async_start_new_kernel_client()
        if self.sandbox:  # the kernel has made its sockets: from now on it writes only to its capped /tmp
            from tito.sandbox import lock

            lock(self._cwd)
        return client

    def _sandboxed(self, assignment, folder):
        """The kernel sees the course's code, the data and the notebooks its tinytorch is built from
        (only the modules this one builds on), and works in its own private /tmp; nothing else."""
        from tito.course import prerequisites
        from tito.sandbox import course_code, job_slot, kernel_manager

        readable = course_code() + [folder / m for m in prerequisites(assignment) if (folder / m).is_dir()]
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
        """The folder of notebooks a graded notebook's tinytorch is built from, and whose they are:
        source/ for a module, the student's submissions for a milestone (as nbgrader is configured)."""
        from nbgrader.coursedir import CourseDirectory

        from tito.course import MODULES

        coursedir = CourseDirectory(config=self.config)
        if assignment in MODULES:
            source = coursedir.format_path(coursedir.source_directory, ".", assignment)
            return Path(source).resolve().parent, "the reference solutions (each module is graded on its own code)"
        submitted = coursedir.format_path(coursedir.submitted_directory, student, assignment)
        return Path(submitted).resolve().parent, f"{student}'s submitted notebooks"

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._judge:  # a milestone: only the judge counts, so no cell runs in the student's kernel
            if cell.metadata.get("nbgrader", {}).get("grade_id") == self._judge_cell()["judge_cell"]:
                cell.outputs = self._run_judge()
            return cell, resources
        if self._crashed_in is None:
            try:
                return super().preprocess_cell(cell, resources, index)
            except DeadKernelError:
                self._crashed_in = index
                message = "the kernel crashed while running this cell (os._exit, a segfault, or out of memory)"
        else:
            message = f"not run: the kernel crashed in cell {self._crashed_in + 1}"
        cell.outputs.append(_error_output("KernelCrashed", message))
        return cell, resources

    def _judge_cell(self):
        return self._judge.judge_file().CONFIG["notebook"]

    def _run_judge(self):
        """Judge the submitted notebooks in the grader's process; the outputs the judge cell shows."""
        from milestones.judge import MilestoneFailure, judge_notebooks

        model_id = self._judge_cell()["model_cell"]
        model = [c.source for c in self._nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == model_id]
        lines = [
            f"Judged by the grader in a fresh process, with the modules in {self._owner}.",
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
            )
        except MilestoneFailure as err:
            outputs.append(_error_output("MilestoneFailure", str(err)))
        return [NotebookNode(output_type="stream", name="stdout", text="\n".join(lines) + "\n"), *outputs]


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
    errors = re.findall(r"^\s*(?:\[\w+\] )?(\w*(?:Error|Exception)\b.*|No \w+ .*exists.*)$", log, flags=re.M)
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


def summary(outcomes):
    """Every graded submission's mark, or why it could not be graded (the class as a whole is in
    tito.report)."""
    lines = []
    for o in outcomes:
        mark = f"{o.score:g}/{o.max_score:g}" if o.graded else "NOT GRADED"
        lines.append(f"  {o.student:<16} {o.assignment:<16} {mark:>10}  {o.message}")
    return lines
