# nbgrader configuration for the TinyTorch course. Run nbgrader commands from this folder; they work
# without activating the virtual environment (importing tito puts its scripts folder on PATH).
import os

import tito  # noqa: F401  (one BLAS thread per grading kernel; the venv's programs on PATH)
from tito.course import KERNEL_ARGUMENTS, cell_timeout, keep_out_of_home
from tito.grading import grading_preprocessors
from tito.sandbox import SandboxCheck
from tito.sandbox import wanted as sandbox_wanted

c = get_config()  # noqa: F821  (provided by nbgrader)
HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "tinytorch"
c.CourseDirectory.root = HERE

# The gradebook. SQLite by default: parallel grading processes wait up to 120 s for its write lock.
# A shared server: TINYTORCH_DB_URL=postgresql+psycopg2://user@host/gradebook (docs/large-class.md).
c.CourseDirectory.db_url = os.environ.get(
    "TINYTORCH_DB_URL", "sqlite:///" + os.path.join(HERE, "gradebook.db") + "?timeout=120"
)

# The exchange, where `nbgrader release_assignment` puts assignments for students to fetch and where
# their submissions wait to be collected. A folder inside the course by default; on a shared server
# (JupyterHub) point TINYTORCH_EXCHANGE at a folder every student can write to.
c.Exchange.root = os.environ.get("TINYTORCH_EXCHANGE", os.path.join(HERE, "exchange"))

# A cell may run for 60 s; cells tagged "training" 900 s (TINYTORCH_CELL_TIMEOUT and
# TINYTORCH_TRAINING_TIMEOUT change them). `tito module complete` uses the same limits.
c.Execute.timeout_func = cell_timeout
c.Execute.interrupt_on_timeout = True
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", *KERNEL_ARGUMENTS]

# Kernels start in an empty folder, milestone judges run outside the student's kernel, and a
# crashed kernel still leaves a graded notebook (see tito/grading.py). SandboxCheck comes first: it
# refuses to grade without the sandbox as root (unless TINYTORCH_NO_SANDBOX=1), and logs a warning for
# every notebook graded without it otherwise.
c.Autograde.autograde_preprocessors = [SandboxCheck, *grading_preprocessors()]

# Where bubblewrap is installed, each kernel and each milestone's training process runs in a sandbox:
# no network, only its own folder, the data and the notebooks it builds on; these limits for each
# (docs/large-class.md). TINYTORCH_NO_SANDBOX=1 (tito grade --no-sandbox) turns it off.
c.GradingExecute.sandbox = sandbox_wanted()
c.GradingExecute.memory_mb = 4096
c.GradingExecute.processes = 64
c.GradingExecute.file_mb = 200
c.GradingExecute.tmp_mb = 256

# Collecting from the exchange refuses, before anything is copied, a submission that is a symbolic
# link, holds one, or holds files of another owner than the student it names (tito/class_grading.py).
# On a one-account course (every student submits as the same OS user) set single_user = True.
c.ExchangeFactory.collect = "tito.class_grading.CheckedCollect"
c.CheckedCollect.single_user = False

keep_out_of_home(HERE)  # IPython, matplotlib and kernel connection files stay in .tito/
