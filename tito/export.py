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

EXPORT_MARK = "#| export"
REPLACES = "replaces:"  # `#| export replaces: SGD` lets a later module replace an earlier name on purpose
TARGET_MARK = "#| default_exp"


class NotebookError(Exception):
    """A notebook that cannot be read at all (missing, corrupt JSON, not a notebook)."""


@dataclass
class ExportedModule:
    assignment: str
    target: str  # e.g. "tensor" -> tinytorch/tensor.py
    code: str
    problems: list = field(default_factory=list)
    names: list = field(default_factory=list)  # public names, in tinytorch.__all__ order
    replaces: list = field(default_factory=list)  # earlier modules' names this one replaces on purpose
    unwritten: list = field(default_factory=list)  # functions whose body still raises NotImplementedError


def read_notebook(path):
    # nbformat is imported here, not at the top: it takes about a second to import (its JSON-schema
    # validator), and a graded kernel's setup cell imports this module without reading a notebook.
    import nbformat

    path = Path(path)
    if not path.exists():
        raise NotebookError(f"{path.name} not found at {path.parent}")
    try:
        return nbformat.read(str(path), as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as err:
        raise NotebookError(
            f"{path.name} is not a readable notebook ({err}). Restore it from your last checkpoint "
            "(File > Revert Notebook to Checkpoint) or fetch a fresh copy of the assignment."
        ) from None
    except Exception as err:  # nbformat validation and other format errors
        raise NotebookError(f"{path.name} could not be read as a notebook: {err}") from None


def _first_line(source):
    return source.lstrip().split("\n", 1)[0].strip()


def export_notebook(path, assignment):
    """Collect the exported cells of one notebook into the text of one Python file."""
    nb = read_notebook(path)
    target, chunks, problems, replaces = None, [], [], []
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        first = _first_line(cell.source)
        if first.startswith(TARGET_MARK):
            target = first[len(TARGET_MARK) :].strip()
        if first != EXPORT_MARK and not first.startswith(f"{EXPORT_MARK} {REPLACES}"):
            continue
        replaces += [n.strip() for n in first[len(f"{EXPORT_MARK} {REPLACES}") :].split(",") if n.strip()]
        body = cell.source.lstrip().split("\n", 1)[1] if "\n" in cell.source.strip() else ""
        try:
            ast.parse(body)
        except SyntaxError as err:
            where = f"{Path(path).name}, cell {number}, line {(err.lineno or 1) + 1}"
            message = f"SyntaxError in {where}: {err.msg}. Fix that cell and export again."
            problems.append(message)
            body = f"raise ImportError({message!r})"
        # keep leading blank lines so a line number in the package maps back to the same cell line
        chunks.append(f"# --- {Path(path).name}, cell {number} ---\n{body.rstrip()}\n")
    if target is None:
        raise NotebookError(
            f"{Path(path).name} has no '{TARGET_MARK} NAME' line, so tito does not know "
            "which tinytorch file it belongs to. Restore its setup cell."
        )
    header = (
        f'"""tinytorch.{target}: exported from {Path(path).name} by `tito export`.\n\n'
        'Generated file: edit the notebook, then export again."""\n'
    )
    body = "\n".join(chunks)
    names = _public_names(body)
    code = header + body + f"\n__all__ = {names!r}\n"
    return ExportedModule(assignment, target, code, problems, names, replaces, _unwritten(body))


def _unwritten(code):
    """Functions and methods that still hold nbgrader's stub, a bare `raise NotImplementedError()`, at
    the top level of their body (an abstract method raises it with a message and is not counted)."""
    found = []
    stubs = {"NotImplementedError", "NotImplementedError()"}

    def visit(nodes, prefix):
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(
                    isinstance(s, ast.Raise) and s.exc is not None and ast.unparse(s.exc) in stubs for s in node.body
                ):
                    found.append(prefix + node.name)

    visit(ast.parse(code).body, "")
    return found


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
    init = [
        '"""tinytorch: built by `tito export` from these notebooks:',
        *[f"    {m.assignment} -> tinytorch/{m.target}.py" for m in modules],
        '"""',
    ]
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

    modules, report, owner = [], {}, {}
    for a in assignments:
        try:
            m = export_notebook(notebook_path(folder, a), a)
        except NotebookError as err:
            report[a] = [str(err)]
            continue
        modules.append(m)
        report[a] = m.problems + _name_clashes(m, owner)
        if m.unwritten:
            report[a].append(f"not written yet: {', '.join(m.unwritten)} (finish {a}, then export again)")
        owner.update(dict.fromkeys(m.names, a))
    return write_package(modules, dest), report


def _name_clashes(module, owner):
    """One name, one owner: tinytorch star-imports every module, so a later module that defines an
    earlier name again would silently shadow it. That is allowed only where the cell says so."""
    problems = []
    for name in module.names:
        if name in owner and name not in module.replaces:
            problems.append(
                f"`{name}` is already defined by {owner[name]}; defining it again would hide that "
                f"one. Choose another name, or start the cell with `{EXPORT_MARK} {REPLACES} {name}` "
                "if it is meant to replace it."
            )
    for name in module.replaces:
        if name not in owner:
            problems.append(f"`{EXPORT_MARK} {REPLACES} {name}`: no earlier module defines `{name}`.")
    return problems
