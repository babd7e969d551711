"""tito: the course tool for TinyTorch (exporter, dataset loaders, milestone harness, CLI).

Students never edit this package; it is what turns *their* notebooks into *their* tinytorch.
"""
import os

# One BLAS thread unless the user chose otherwise: the course's models are small, numpy's
# elementwise work is single-threaded anyway, and on a shared or busy machine (JupyterHub, parallel
# grading) two BLAS threads per process make training several times slower, not faster.
# This only takes effect when tito is imported before numpy, as in the notebooks' setup cell.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
