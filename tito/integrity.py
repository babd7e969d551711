"""What a student's solution cell may not do when it is graded: reach into the testing machinery.

A module's tests run in the same Python process as the student's code, so that code could make a
failing test pass without being right: replace numpy's comparisons or tito's checks, edit builtins
or sys.modules, register an IPython hook that swallows errors, trace the test's frames. Two layers
keep such code from buying points:

1. scan(): before grading, each solution cell is read (never run) and code that reaches for that
   machinery is found: imports outside what a deep-learning module needs, writes to numpy's (or any
   other library's) attributes, frames, globals, builtins, exec/eval, IPython. A flagged cell is not
   run; the grader shows why, the tests that need it lose their points, and the instructor sees the
   submission flagged for review.
2. GUARD / CHECK: code the grader itself sends to the kernel (never a cell of the notebook). GUARD
   fingerprints the machinery before the first solution cell runs; CHECK, after every later cell,
   reports what changed. A changed machinery fails every test after it, with the reason.

Honest code never needs any of it: every reference solution and every realistic wrong variant in
tests/wrong_variants/ scans clean (tests/test_integrity.py).
"""

import ast
import builtins
from dataclasses import dataclass

# Modules a solution may import: numpy and the standard library's numeric and data-structure tools,
# plotting and progress bars, and the student's own tinytorch.
ALLOWED_IMPORTS = {
    "numpy",
    "math",
    "cmath",
    "random",
    "statistics",
    "fractions",
    "decimal",
    "itertools",
    "functools",
    "operator",
    "collections",
    "heapq",
    "bisect",
    "array",
    "dataclasses",
    "typing",
    "abc",
    "enum",
    "numbers",
    "copy",
    "contextlib",
    "re",
    "string",
    "textwrap",
    "unicodedata",
    "json",
    "time",
    "weakref",
    "matplotlib",
    "tqdm",
    "tinytorch",
}
FORBIDDEN_SUBMODULES = {"numpy.testing", "numpy.ctypeslib", "numpy.distutils", "numpy.f2py"}

# Built-in functions that reach interpreter state or run code that cannot be read beforehand.
FORBIDDEN_CALLS = {
    "exec": "runs code that cannot be read before it runs",
    "eval": "runs code that cannot be read before it runs",
    "compile": "makes code that cannot be read before it runs",
    "__import__": "imports a module by a computed name",
    "globals": "reaches the notebook's global namespace",
    "locals": "reaches a frame's variables",
    "breakpoint": "starts a debugger",
    "get_ipython": "reaches the IPython kernel",
    "input": "waits for keyboard input",
}
# Attributes that lead from an object to code, frames or namespaces.
FORBIDDEN_ATTRIBUTES = {
    "__globals__",
    "__builtins__",
    "__code__",
    "__closure__",
    "__subclasses__",
    "__bases__",
    "__base__",
    "__mro__",
    "__loader__",
    "__spec__",
    "__import__",
    "__getattribute__",
    "f_back",
    "f_globals",
    "f_locals",
    "f_builtins",
    "f_code",
    "gi_frame",
    "cr_frame",
    "ag_frame",
    "tb_frame",
    "tb_next",
    "testing",
}
FORBIDDEN_NAMES = {"__builtins__", "__loader__", "__spec__", "__import__", "get_ipython", "In", "Out", "_ih", "_oh"}
MUTATORS = {"setattr", "delattr", "vars", "__setattr__", "__delattr__"}
BUILTIN_NAMES = {n for n in dir(builtins) if not n.startswith("_")}
# Interpreter modules a course cell may have imported (11's progress bar prints to sys.stdout): a
# solution may read only these harmless attributes of them.
INTERPRETER_MODULES = {"sys": {"stdout", "stderr", "float_info", "maxsize", "version_info", "byteorder"}}


@dataclass
class Finding:
    line: int
    code: str
    why: str

    def __str__(self):
        return f"line {self.line}: `{self.code}` ({self.why})"


def library_names(tree, known=(), through_calls=True):
    """Names bound to a module, or to something taken from a module, that is not the student's own
    tinytorch (np, math, `from numpy import linalg`...), including simple aliases of them.
    through_calls: whether `m = f(np).x` makes m an alias too (in a solution cell it may; in the
    course's own cells `big = randn(200, 200).data` is data, which a solution may name its own)."""
    names = set(known)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not a.name.startswith("tinytorch"):
                    names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("tinytorch") and node.level == 0:
            names.update(a.asname or a.name for a in node.names)
    changed = True
    while changed:  # m = np; t = np.linalg: aliases of library objects are library objects
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                value = node.value
                if (
                    isinstance(value, (ast.Name, ast.Attribute, ast.Subscript))
                    and _object_names(value, through_calls) & names
                ):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        for n in ast.walk(t):
                            if isinstance(n, ast.Name) and n.id not in names:
                                names.add(n.id)
                                changed = True
    return names


def course_libraries(nb):
    """(library names, module names) the course's own cells of a notebook bind (np, math, as_strided,
    assert_close...; np, math, sys): a solution cell may use them but not change or rebind them."""
    code = "\n".join(
        _without_magics(c.source)
        for c in nb.cells
        if c.cell_type == "code" and not c.metadata.get("nbgrader", {}).get("solution")
    )
    defaults = {"np", "numpy", "math"}
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return defaults, defaults
    return library_names(tree, defaults, through_calls=False), module_names(tree) | defaults


def _without_magics(source):
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _module_level(tree):
    """The nodes that run at the cell's top level (not inside a function or class body)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo += list(ast.iter_child_nodes(node))


def _bound_names(node):
    """Names a statement binds in the namespace it runs in."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [a.asname or a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.Global):
        return list(node.names)
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return [node.id]
    return []


def _object_names(node, through_calls=True):
    """The names an expression's *object* comes from: `a.b[i].c` -> a, `f(np).x` -> f and np (none
    when not through_calls); an index (`dz[np.arange(n)]`) only selects inside the object, so its
    names are left out."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, (ast.Attribute, ast.Subscript)):
        return _object_names(node.value, through_calls)
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} if through_calls else set()


def module_names(tree):
    """Names bound by `import X` or `import X as Y`: modules themselves."""
    return {
        a.asname or a.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for a in node.names
        if not a.name.startswith("tinytorch")
    }


def scan(source, known_libraries=("np", "numpy", "math"), known_modules=("np", "numpy", "math")):
    """Findings in one solution cell's source (a cell that does not parse has none: it fails on its own).
    known_libraries: the names the course's cells bind to library objects (course_libraries());
    known_modules: those of them that are modules."""
    try:
        tree = ast.parse(_without_magics(source))
    except SyntaxError:
        return []
    libraries = library_names(tree, known_libraries)
    modules = module_names(tree) | set(known_modules)
    protected = set(known_libraries) | BUILTIN_NAMES  # names a test cell relies on
    found = []

    def flag(node, why):
        found.append(Finding(node.lineno, ast.unparse(node).split("\n")[0][:80], why))

    for node in _module_level(tree):  # `np = fake` or `all = ...` would change what a test cell means
        for name in _bound_names(node):
            if name in protected and not (isinstance(node, ast.Import) and _imports_itself(node, name)):
                flag(node, f"rebinds {name}")
    as_value = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Global) and set(node.names) & protected:
            flag(node, f"rebinds {', '.join(sorted(set(node.names) & protected))}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported += [f"{node.module}.{a.name}" for a in node.names]
            for name in imported:
                top = name.split(".")[0]
                if node.__class__ is ast.ImportFrom and node.level:
                    flag(node, "a relative import")
                elif top and top not in ALLOWED_IMPORTS:
                    flag(node, f"imports {top}, which a solution does not need")
                elif any(name == m or name.startswith(m + ".") for m in FORBIDDEN_SUBMODULES):
                    flag(node, f"imports {name}, the machinery the tests compare with")
                else:
                    continue
                break
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            flag(node, f"uses {node.id}")
        elif isinstance(node, ast.Name) and node.id in INTERPRETER_MODULES and id(node) not in as_value:
            flag(node, f"uses the module {node.id} itself")
        elif (
            isinstance(node, ast.Name)
            and node.id in modules
            and isinstance(node.ctx, ast.Load)
            and id(node) not in as_value
        ):
            flag(node, f"uses the module {node.id} itself, not one of its functions")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in INTERPRETER_MODULES
        ):
            if node.attr not in INTERPRETER_MODULES[node.value.id]:
                flag(node, f"reaches {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            flag(node, FORBIDDEN_CALLS[node.func.id])
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            flag(node, f"reaches .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "__dict__" and _object_names(node) & libraries:
            flag(node, "reaches a library's namespace")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = list(node.targets) if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            while targets:
                t = targets.pop()
                if isinstance(t, (ast.Tuple, ast.List, ast.Starred)):
                    targets += t.elts if not isinstance(t, ast.Starred) else [t.value]
                elif isinstance(t, (ast.Attribute, ast.Subscript)) and _object_names(t) & libraries:
                    flag(node, f"changes {ast.unparse(t)[:40]}, which belongs to a library")
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if name in MUTATORS and any(_object_names(a) & libraries for a in arguments):
                flag(node, f"{name} on a library object")
    unique = {(f.line, f.code, f.why): f for f in found}
    return sorted(unique.values(), key=lambda f: f.line)


def _imports_itself(node, name):
    """`import numpy as np` binds np to numpy again: no change."""
    return any((a.asname or a.name) == name and a.name == {"np": "numpy"}.get(name, name) for a in node.names)


# -------------------------------------------------------------------------------- runtime guard
# Sent by the grader to the kernel as code of its own (never a notebook cell). The fingerprint is
# the identity of every object the tests rely on; the baseline is kept in the grader, not the kernel.
FINGERPRINT = r"""
def _tito_fingerprint():
    import builtins, sys
    import numpy
    import numpy.testing
    import tito.checks
    seen = {}
    for module in (builtins, numpy, numpy.testing, tito.checks):
        for key, value in sorted(vars(module).items()):
            if not key.startswith("__") and key not in ("input", "raw_input"):  # the kernel swaps these per request
                seen[f"{module.__name__}.{key}"] = id(value)
    for name in ("numpy", "numpy.testing", "tito.checks", "builtins", "sys"):
        seen[f"sys.modules[{name!r}]"] = id(sys.modules.get(name))
    seen["sys.breakpointhook"] = id(sys.breakpointhook)
    seen["sys.gettrace()"] = id(sys.gettrace())
    seen["sys.getprofile()"] = id(sys.getprofile())
    seen["sys.meta_path"] = tuple(map(id, sys.meta_path))
    try:
        shell = get_ipython()
    except NameError:
        shell = None
    if shell is not None:
        seen["IPython ast_transformers"] = tuple(map(id, shell.ast_transformers))
        seen["IPython input_transformers"] = tuple(map(id, shell.input_transformers_post + shell.input_transformers_cleanup))
        seen["IPython custom_exceptions"] = (shell.custom_exceptions, id(shell.CustomTB))
        for method in ("showtraceback", "_showtraceback", "run_cell", "run_cell_async", "run_ast_nodes", "run_code"):
            seen[f"IPython {method}"] = (id(vars(shell).get(method)), id(getattr(type(shell), method, None)))
        seen["IPython displayhook"] = id(shell.displayhook)
    import json
    return json.dumps({k: repr(v) for k, v in seen.items()})
print(_tito_fingerprint())
del _tito_fingerprint
"""


def changed(before, after):
    """The names whose fingerprint differs between two FINGERPRINT outputs (JSON dicts)."""
    import json

    try:
        a, b = json.loads(before), json.loads(after)
    except (ValueError, TypeError):
        return ["the grader's integrity check (its output was changed)"]
    if not isinstance(a, dict) or not isinstance(b, dict):
        return ["the grader's integrity check (its output was changed)"]
    return sorted(k for k in a if a[k] != b.get(k))  # names that appear later (a lazy submodule) are harmless
