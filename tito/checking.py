"""Run a notebook top to bottom, as the grader would, and report each test cell."""

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import nbclient
import nbformat
from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError

from tito.course import KERNEL_ARGUMENTS, cell_timeout
from tito.export import read_notebook


@dataclass
class CellResult:
    grade_id: str
    points: float
    passed: bool
    error: str = ""


class CellError(NamedTuple):
    """An error in a cell that is not a test: where it is for a reader ("cell N (id ...)" counting from
    1, or its grade id), the error, and the key a list of expected errors names it by (grade or cell id)."""

    where: str
    error: str
    key: str


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
            findings = scan(cell.source, *libraries)
            if findings:
                reason = "; ".join(map(str, findings))
                cell.source = f"raise RuntimeError({('not run by the grader: ' + reason)!r})"


def run_checks(notebook):
    """Execute the notebook in its own folder, with the grader's time limits; return a CellResult per
    test cell, and the first error outside the test cells (the setup cell, say) as (cell, error) or None."""
    notebook = Path(notebook)
    results, other_errors = next(run_versions(notebook.parent, [read_notebook(notebook)]))
    return results, (other_errors[0] if other_errors else None)


def run_versions(folder, notebooks, through_last_test=False):
    """run_checks for several versions of one notebook (a list of NotebookNodes, e.g. wrong solutions),
    one after another in one kernel working in folder: the namespace is reset and the notebook's setup
    cell imports a fresh tinytorch for each, so a version sees nothing of the one before. A kernel that
    dies is started again for the next version. through_last_test: stop after the last test cell (the
    "try it" cells after it decide no test). Yields, per version, a CellResult per test cell and the
    errors of the other cells as CellErrors."""
    client = nbclient.NotebookClient(
        nbformat.v4.new_notebook(),
        timeout_func=cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        kernel_name="python3",
        extra_arguments=KERNEL_ARGUMENTS,
        resources={"metadata": {"path": str(folder)}},
    )
    try:
        for nb in notebooks:
            withhold_flagged_cells(nb)
            if client.kc is None:
                client.km = client.create_kernel_manager()
                client.start_new_kernel()
                client.start_new_kernel_client()
            else:
                run_sync(client.kc.execute_interactive)("%reset -f", store_history=False, timeout=60)
            client.nb = nb
            client.reset_execution_trackers()
            graded = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade")]
            last = graded[-1] if through_last_test and graded else len(nb.cells) - 1
            try:
                for index, cell in enumerate(nb.cells[: last + 1]):
                    client.execute_cell(cell, index)
            except DeadKernelError:
                client._cleanup_kernel()
                client.km = client.kc = None
                crashed = next(
                    i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count") is None
                )
                for cell in nb.cells[crashed:]:
                    if cell.cell_type == "code":
                        cell.outputs.append(
                            nbformat.v4.new_output(
                                "error", ename="KernelCrashed", evalue="the kernel crashed", traceback=[]
                            )
                        )
            yield _results(nb)
    finally:
        if client.kc is not None:
            client._cleanup_kernel()


def _results(nb):
    results, other_errors = [], []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        error = _error_of(cell, cell_timeout(cell)) if cell.cell_type == "code" else ""
        if meta.get("grade"):
            results.append(CellResult(meta["grade_id"], meta.get("points", 0), not error, error))
        elif error:
            key = meta.get("grade_id") or str(cell.get("id", "?"))
            other_errors.append(CellError(meta.get("grade_id") or f"cell {index + 1} (id {key})", error, key))
    return results, other_errors
