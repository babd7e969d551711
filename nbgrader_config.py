# nbgrader configuration for the TinyTorch course. Run nbgrader commands from this folder.
import os

import tito  # noqa: F401  (gives each grading kernel one BLAS thread; see tito/__init__.py)

c = get_config()  # noqa: F821  (provided by nbgrader)

c.CourseDirectory.course_id = "tinytorch"

# A cell may run for CELL_TIMEOUT seconds; cells tagged "training" (the milestone judges, which
# train real models) get TRAINING_TIMEOUT. A cell that runs over is interrupted, marked as an
# error, and grading goes on with the next cell.
CELL_TIMEOUT = int(os.environ.get("TINYTORCH_CELL_TIMEOUT", "60"))
TRAINING_TIMEOUT = int(os.environ.get("TINYTORCH_TRAINING_TIMEOUT", "900"))


def cell_timeout(cell):
    return TRAINING_TIMEOUT if "training" in cell.metadata.get("tags", []) else CELL_TIMEOUT


c.Execute.timeout_func = cell_timeout
c.Execute.interrupt_on_timeout = True

# A kernel that crashes (os._exit, segfault, out of memory) still leaves a graded notebook.
from tito.grading import crash_safe_autograde_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = crash_safe_autograde_preprocessors()
