"""Run a notebook top to bottom, as the grader would, and report each test cell."""

from dataclasses import dataclass
from pathlib import Path

import nbclient

from tito.course import KERNEL_ARGUMENTS, cell_timeout
from tito.export import read_notebook


@dataclass
class CellResult:
    grade_id: str
    points: float
    passed: bool
    error: str = ""


def _error_of(cell, timeout):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            if out.get("ename") in ("KeyboardInterrupt", "CellTimeoutError"):
                return f"ran longer than {timeout} s and was stopped: look for an infinite loop"
            if out.get("ename") == "NotImplementedError":
                return out.get("evalue") or "not written yet (a function it uses still raises NotImplementedError)"
            return f"{out.get('ename')}: {out.get('evalue')}".strip(" :")
    return ""


def withhold_flagged_cells(nb):
    """A solution cell that reaches into the testing machinery (tito.integrity) is not run by the
    grader: here it raises instead, so the student sees before submitting which tests it costs."""
    from tito.integrity import course_libraries, scan

    libraries = course_libraries(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            findings = scan(cell.source, libraries)
            if findings:
                reason = "; ".join(map(str, findings))
                cell.source = f"raise RuntimeError({('not run by the grader: ' + reason)!r})"


def run_checks(notebook):
    """Execute the notebook in its own folder, with the grader's time limits; return a CellResult per
    test cell, and the first error outside the test cells (the setup cell, say)."""
    notebook = Path(notebook)
    nb = read_notebook(notebook)
    withhold_flagged_cells(nb)
    client = nbclient.NotebookClient(
        nb,
        timeout_func=cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        kernel_name="python3",
        extra_arguments=KERNEL_ARGUMENTS,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    client.execute()
    results, first_error = [], None
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        error = _error_of(cell, cell_timeout(cell)) if cell.cell_type == "code" else ""
        if meta.get("grade"):
            results.append(CellResult(meta["grade_id"], meta.get("points", 0), not error, error))
        elif error and first_error is None:
            first_error = (meta.get("grade_id") or "a code cell", error)
    return results, first_error
