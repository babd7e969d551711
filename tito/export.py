"""Turn notebooks into a tinytorch package: only the cells marked `#| export` go in.

The same exporter builds a student's package from their notebooks and the reference package from
`source/`, so there is exactly one way code gets into tinytorch.
"""
import ast
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

EXPORT_MARK = "#| export"
TARGET_MARK = "#| default_exp"


class NotebookError(Exception):
    """A notebook that cannot be read at all (missing, corrupt JSON, not a notebook)."""


@dataclass
class ExportedModule:
    assignment: str
    target: str                       # e.g. "tensor" -> tinytorch/tensor.py
    code: str
    problems: list = field(default_factory=list)


def read_notebook(path):
    path = Path(path)
    if not path.exists():
        raise NotebookError(f"{path.name} not found at {path.parent}")
    try:
        return nbformat.read(str(path), as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as err:
        raise NotebookError(
            f"{path.name} is not a readable notebook ({err}). Restore it from your last checkpoint "
            "(File > Revert Notebook to Checkpoint) or fetch a fresh copy of the assignment.") from None
    except Exception as err:  # nbformat validation and other format errors
        raise NotebookError(f"{path.name} could not be read as a notebook: {err}") from None


def _first_line(source):
    return source.lstrip().split("\n", 1)[0].strip()


def export_notebook(path, assignment):
    """Collect the exported cells of one notebook into the text of one Python file."""
    nb = read_notebook(path)
    target, chunks, problems = None, [], []
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        first = _first_line(cell.source)
        if first.startswith(TARGET_MARK):
            target = first[len(TARGET_MARK):].strip()
        if first != EXPORT_MARK:
            continue
        body = cell.source.lstrip().split("\n", 1)[1] if "\n" in cell.source.strip() else ""
        try:
            ast.parse(body)
        except SyntaxError as err:
            where = f"{Path(path).name}, cell {number}, line {(err.lineno or 1) + 1}"
            message = f"SyntaxError in {where}: {err.msg}. Fix that cell and export again."
            problems.append(message)
            body = f"raise ImportError({message!r})"
        chunks.append(f"# --- {Path(path).name}, cell {number} ---\n{body.strip()}\n")
    if target is None:
        raise NotebookError(f"{Path(path).name} has no '{TARGET_MARK} NAME' line, so tito does not know "
                            "which tinytorch file it belongs to. Restore its setup cell.")
    header = (f'"""tinytorch.{target}: exported from {Path(path).name} by `tito export`.\n\n'
              'Generated file: edit the notebook, then export again."""\n')
    names = _public_names("\n".join(chunks))
    code = header + "\n".join(chunks) + f"\n__all__ = {names!r}\n"
    return ExportedModule(assignment, target, code, problems)


def _public_names(code):
    """Top-level classes, functions and assignments that do not start with '_' (not imports)."""
    names = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            candidates = [node.name]
        elif isinstance(node, ast.Assign):
            candidates = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            candidates = [node.target.id]
        else:
            continue
        names += [n for n in candidates if not n.startswith("_") and n not in names]
    return names


def write_package(modules, dest):
    """Write tinytorch/ under dest from ExportedModules, replacing any previous export whole."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tinytorch-", dir=dest))
    package = staging / "tinytorch"
    package.mkdir()
    init = ['"""tinytorch: built by `tito export` from these notebooks:',
            *[f"    {m.assignment} -> tinytorch/{m.target}.py" for m in modules], '"""']
    for m in modules:
        (package / f"{m.target}.py").write_text(m.code)
        init.append(f"from .{m.target} import *  # noqa: F401,F403")
    init.append(f"EXPORTED_MODULES = {[m.assignment for m in modules]!r}")
    (package / "__init__.py").write_text("\n".join(init) + "\n")
    final = dest / "tinytorch"
    if final.exists():
        shutil.rmtree(final)
    package.rename(final)
    shutil.rmtree(staging)
    return final


def describe(report):
    """The lines that show an export report: a tick or a cross per notebook, then its problems."""
    lines = []
    for assignment, problems in report.items():
        lines.append(f"  {'✓' if not problems else '✗'} {assignment}")
        lines += [f"      {p}" for p in problems]
    return lines


def export(folder, assignments, dest):
    """Export the given assignments' notebooks found under folder; return (package path, report).

    report maps each assignment to a list of problems ([] = exported cleanly). A notebook that is
    missing or unreadable is reported and left out; the others are still exported.
    """
    from tito.course import notebook_path
    modules, report = [], {}
    for a in assignments:
        try:
            m = export_notebook(notebook_path(folder, a), a)
        except NotebookError as err:
            report[a] = [str(err)]
            continue
        modules.append(m)
        report[a] = m.problems
    return write_package(modules, dest), report
