"""What a notebook's setup cell calls: build tinytorch from the right notebooks and import it.

Where the code comes from depends on who runs the notebook:
- a student (or an instructor in source/): the sibling notebooks ../NN_name/NN_name.ipynb;
- `nbgrader autograde` of a *module*: the reference solutions for earlier modules, so each module
  is graded on its own code only (a bug in 03 costs points in 03, not again in 04 and 05);
- `nbgrader autograde` of a *milestone*: that student's own submitted notebooks, nothing else.
"""
import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

from tito.course import MODULES, prerequisites
from tito.export import describe, export


def autograde_root(cwd):
    """The course root when cwd is <root>/autograded/<student>/<assignment>, else None."""
    cwd = Path(cwd).resolve()
    root = cwd.parent.parent.parent
    if cwd.parent.parent.name == "autograded" and (root / "source").is_dir():
        return root
    return None


def notebook_folder(assignment, cwd):
    """The folder whose NN_name/NN_name.ipynb notebooks feed the package for this notebook."""
    cwd = Path(cwd).resolve()
    root = autograde_root(cwd)
    if root is None:
        return cwd.parent
    if assignment in MODULES:
        return root / "source"
    return root / "submitted" / cwd.parent.name


def build_tinytorch(folder, assignments, dest=None):
    """Export the assignments' notebooks under folder into dest (a fresh temp folder by default)."""
    if dest is None:
        dest = tempfile.mkdtemp(prefix="tinytorch-build-")
        atexit.register(shutil.rmtree, dest, ignore_errors=True)  # graders start many kernels
    return export(folder, assignments, Path(dest))


def import_tinytorch(package):
    """Import the tinytorch at package, replacing any tinytorch imported before."""
    for name in [n for n in sys.modules if n == "tinytorch" or n.startswith("tinytorch.")]:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not (Path(p) / "tinytorch").is_dir()]
    sys.path.insert(0, str(Path(package).parent))
    importlib.invalidate_caches()
    return importlib.import_module("tinytorch")


def load_tinytorch(folder, assignments, dest=None):
    package, report = build_tinytorch(folder, assignments, dest)
    return import_tinytorch(package), report


def prepare(assignment, cwd=None):
    """Make `import tinytorch` give the package built from the notebooks this one builds on."""
    cwd = Path(cwd) if cwd else Path.cwd()
    needed = prerequisites(assignment)
    if not needed:
        print(f"{assignment} starts from scratch: no earlier modules needed.")
        return None
    package, report = build_tinytorch(notebook_folder(assignment, cwd), needed)
    source = "the reference solutions" if autograde_root(cwd) and assignment in MODULES else "your notebooks"
    print(f"tinytorch built from {source}:", *describe(report), sep="\n")
    try:
        return import_tinytorch(package)
    except Exception as err:  # the student's own code failed at import time
        print(f"\nYour tinytorch could not be imported: {type(err).__name__}: {err}\n"
              "Fix the module named above, then run this cell again.")
        raise
