"""Instructor side: autograde every submission and summarise where the class struggles."""
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from nbclient.exceptions import DeadKernelError

from tito.export import NotebookError, read_notebook
from tito.release import nbgrader_api


class CrashSafeExecute(Execute):
    """nbgrader's Execute, but a crashed kernel (os._exit, a segfault, out of memory) still leaves a
    graded notebook: the cell that crashed it and every code cell after it get an error output, so
    their tests score zero instead of the whole submission failing to grade (or, worse, unexecuted
    test cells counting as passed)."""

    def preprocess(self, nb, resources=None, km=None):
        self._crashed_in = None
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._crashed_in is None:
            try:
                return super().preprocess_cell(cell, resources, index)
            except DeadKernelError:
                self._crashed_in = index
                message = "the kernel crashed while running this cell (os._exit, a segfault, or out of memory)"
        else:
            message = f"not run: the kernel crashed in cell {self._crashed_in + 1}"
        cell.outputs.append(NotebookNode(output_type="error", ename="KernelCrashed", evalue=message,
                                         traceback=[f"KernelCrashed: {message}"]))
        return cell, resources


def crash_safe_autograde_preprocessors():
    """nbgrader's default autograde steps with Execute swapped for CrashSafeExecute."""
    from nbgrader.converters import Autograde
    default = Autograde.class_traits()["autograde_preprocessors"].default()
    return [CrashSafeExecute if step is Execute else step for step in default]


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
    errors = re.findall(r"^\s*(\w+(?:Error|Exception)\b.*)$", log, flags=re.M)
    return errors[-1].strip() if errors else "nbgrader could not autograde it (see its log)"


def autograde(root, assignments=None, students=None):
    """Autograde each submitted/<student>/<assignment>; one bad submission never stops the others."""
    from nbgrader.api import Gradebook
    root = Path(root)
    api = nbgrader_api(root)
    submitted = root / "submitted"
    outcomes = []
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir()):
        if students and student_dir.name not in students:
            continue
        for sub in sorted(p for p in student_dir.iterdir() if p.is_dir()):
            if assignments and sub.name not in assignments:
                continue
            result = api.autograde(sub.name, student_dir.name, force=True, create=True)
            outcomes.append(Outcome(student_dir.name, sub.name, bool(result["success"])))
            if not result["success"]:
                outcomes[-1].message = _why_it_failed(sub, result.get("log") or "")
    with Gradebook(api.coursedir.db_url) as gb:
        for o in outcomes:
            if o.graded:
                s = gb.find_submission(o.assignment, o.student)
                o.score, o.max_score = s.score, s.max_score
    return outcomes


def failing_tests(root):
    """(assignment, grade_id) -> number of students who lost points on it, most common first."""
    from nbgrader.api import Gradebook
    api = nbgrader_api(root)
    counts = Counter()
    with Gradebook(api.coursedir.db_url) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                for nb in submission.notebooks:
                    for grade in nb.grades:
                        if grade.max_score and (grade.score or 0) < grade.max_score:
                            counts[(assignment.name, grade.name)] += 1
    return counts.most_common()


def summary(root, outcomes):
    """What an instructor reads after grading: every submission, milestone rates, hardest tests."""
    from tito.course import milestones
    lines = []
    for o in outcomes:
        mark = f"{o.score:g}/{o.max_score:g}" if o.graded else "NOT GRADED"
        lines.append(f"  {o.student:<16} {o.assignment:<16} {mark:>10}  {o.message}")
    lines.append("\nMilestone completion (curriculum validation):")
    for m in milestones():
        tried = [o for o in outcomes if o.assignment == m.assignment]
        if tried:
            passed = sum(bool(o.graded and o.max_score and o.score == o.max_score) for o in tried)
            lines.append(f"  Milestone {m.number} ({m.name}): {passed}/{len(tried)} students ({passed / len(tried):.0%})")
    worst = failing_tests(root)[:10]
    if worst:
        lines.append("\nTests that fail most often:")
        lines += [f"  {n:>4} × {assignment}/{grade_id}" for (assignment, grade_id), n in worst]
    return lines
