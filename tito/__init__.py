"""tito: the course tool for TinyTorch (exporter, dataset loaders, milestone harness, CLI).

Students never edit this package; it is what turns *their* notebooks into *their* tinytorch.
"""

import os
import sys

# One BLAS thread unless the user chose otherwise: the course's models are small, numpy's
# elementwise work is single-threaded anyway, and on a shared or busy machine (JupyterHub, parallel
# grading) two BLAS threads per process make training several times slower, not faster.
# This only takes effect when tito is imported before numpy, as in the notebooks' setup cell.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# nbgrader runs helper programs by name (`alembic` when it opens a gradebook), and the kernels it
# starts are found the same way: put this interpreter's scripts folder on PATH so that everything
# works from a plain shell, without activating the virtual environment.
_scripts = os.path.dirname(sys.executable)
if _scripts not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _scripts + os.pathsep + os.environ.get("PATH", "")
