"""What a notebook's setup cell calls: build tinytorch from the right notebooks and import it.

Where the code comes from depends on who runs the notebook:
- a student (or an instructor in source/): the sibling notebooks ../NN_name/NN_name.ipynb;
- `nbgrader autograde`: the grader hands the kernel a package it exported beforehand from the
  reference solutions (tito.grading.GradingExecute sets TINYTORCH_PACKAGE), so each module is graded
  on its own code only (a bug in 03 costs points in 03, not again in 04 and 05), and the grading
  kernel never sees an instructor notebook (solutions of later cells, hidden tests).
"""

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tito.asserts import install as install_assert_messages
from tito.course import prerequisites
from tito.errors import name_unwritten
from tito.export import describe, export

PACKAGE_ENV = "TINYTORCH_PACKAGE"  # the folder holding a ready tinytorch/, set by the grader


def notebook_folder(cwd):
    """The folder whose NN_name/NN_name.ipynb notebooks feed the package, and whose they are."""
    return Path(cwd).resolve().parent, "your notebooks"


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


def _name_unwritten_functions():
    """In IPython, an empty NotImplementedError gets the name of the function that is not written yet,
    and an assert without a message shows what it compared (tito.asserts)."""
    try:
        ip = get_ipython()  # noqa: F821  (defined inside IPython only)
    except NameError:
        return

    def show(shell, etype, value, tb, tb_offset=None):
        shell.showtraceback((etype, name_unwritten(value), tb), tb_offset=tb_offset)

    ip.set_custom_exc((NotImplementedError,), show)
    install_assert_messages(ip)


def prepare(assignment, cwd=None):
    """Make `import tinytorch` give the package built from the notebooks this one builds on."""
    _name_unwritten_functions()
    needed = prerequisites(assignment)
    if not needed:
        print(f"{assignment} starts from scratch: no earlier modules needed.")
        return
    if os.environ.get("NBGRADER_EXECUTION") == "autograde" and os.environ.get(PACKAGE_ENV):
        import_tinytorch(Path(os.environ[PACKAGE_ENV]) / "tinytorch")
        print(f"tinytorch: the course's reference code of {', '.join(needed)} (each module is graded on its own code).")
        return
    folder, owner = notebook_folder(cwd or Path.cwd())
    package, report = build_tinytorch(folder, needed)
    print(f"tinytorch built from {owner}:", *describe(report), sep="\n")
    if any(report.values()):
        print("Go back to the modules marked ✗ and finish them: this notebook uses their code.")
    try:
        import_tinytorch(package)
    except Exception as err:  # the student's own code failed at import time
        print(
            f"\nYour tinytorch could not be imported: {type(err).__name__}: {err}\n"
            "Fix the module named above, then run this cell again."
        )
        raise
