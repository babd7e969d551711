"""Run a student's code in a sandbox: bubblewrap (Debian's `bubblewrap`) plus kernel resource limits.

Inside, the code sees the interpreter, the course's Python environment, the datasets (read-only)
and its own job folder (read-write), nothing else: no network but loopback, its own process tree,
a small private /tmp. Limits (prlimit): address space, processes, file size, CPU time; `timeout`
kills the whole tree at the wall-clock limit. A run as root drops to an unprivileged uid inside
(setpriv), where the process limit counts; each parallel job gets its own uid, so one student's
fork bomb cannot use up another's.

bubblewrap itself starts with an empty environment: its first process is the sandbox's pid 1, which
the code inside can see in /proc, and as an ordinary user it could read that process's environment
(the grader's, with TINYTORCH_DATA). Outside the sandbox nothing of this holds: grading without it is
never silent (see grading_problem and SandboxCheck, which nbgrader_config.py puts first in autograde).
"""

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 10**9  # job slot k runs as uid UID_BASE + k (no such user needed; far above real users)


@dataclass
class Limits:
    memory_mb: int = 4096  # address space; numpy and BLAS reserve more than they touch
    processes: int = 64  # threads count too
    file_mb: int = 200  # largest file it may write
    tmp_mb: int = 256  # its private /tmp
    cpu_s: int = 1800
    wall_s: int = 1800


def job_slot():
    """This grading process's slot, its pid: no two running at once share one."""
    return os.getpid()


def course_code():
    """The folders of the course's own Python code, which every sandboxed run imports."""
    import milestones
    import tito

    return [Path(tito.__file__).parent, Path(milestones.__file__).parent]


def available():
    """The reason the sandbox cannot run here, or None."""
    for program in ["bwrap", "prlimit", "setpriv", "timeout", "env"]:
        if not shutil.which(program):
            return f"{program} is not installed (Debian: apt-get install bubblewrap util-linux coreutils)"
    return _bwrap_cannot_start(shutil.which("bwrap"))


@functools.cache
def _bwrap_cannot_start(bwrap):
    """Why this bwrap cannot make the namespaces every sandboxed run needs, or None. Installed is not
    enough: in many containers (Docker's default seccomp, Kubernetes pods, Ubuntu's AppArmor rules)
    bwrap exists but may not unshare, and every graded submission would then fail as if its code had."""
    probe = [bwrap, "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc"]
    probe += ["--unshare-uts", "--ro-bind", "/", "/", "true"]
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap could not be run ({err})"
    if proc.returncode == 0:
        return None
    said = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return (
        f"bwrap is installed but cannot create its namespaces here ({said}); in a container, allow "
        "unprivileged user namespaces (or grade on a virtual machine)"
    )


def _parents(path):
    """Folders above path, outermost first (bwrap creates them 0700 as root unless told otherwise)."""
    return [p for p in reversed(Path(path).parents) if str(p) != "/"]


def command(argv, job, readable=(), limits=None, slot=0, env=None, workdir=None):
    """The argv that runs argv in a sandbox with job (a folder) writable and each of readable visible
    read-only at the same path. workdir: its working folder (default job; "/tmp" is the private
    /tmp, whose size is capped). env: variables to set inside (nothing else is inherited but PATH,
    HOME=/tmp and one BLAS thread)."""
    limits = limits or Limits()
    job = Path(job).resolve()
    readable = [Path(p).resolve() for p in readable]
    python = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
    box = ["bwrap", "--die-with-parent", "--new-session", "--clearenv"]
    box += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    box += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for link in ["bin", "lib", "lib64", "sbin"]:
        target = Path("/") / link
        if target.is_symlink():
            box += ["--symlink", os.readlink(target), str(target)]
        elif target.exists():
            box += ["--ro-bind", str(target), str(target)]
    box += [
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--perms",
        "1777",
        "--size",
        str(limits.tmp_mb << 20),
        "--tmpfs",
        "/tmp",
    ]
    seen = set()
    for path in [*python, *readable, job]:
        for parent in _parents(path):
            if parent not in seen and not str(parent).startswith("/usr"):
                seen.add(parent)
                box += ["--perms", "0755", "--dir", str(parent)]
    for path in dict.fromkeys(python + readable):
        if not str(path).startswith("/usr"):
            box += ["--ro-bind", str(path), str(path)]
    box += ["--bind", str(job), str(job), "--chdir", str(workdir or job)]
    variables = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp", "MPLCONFIGDIR": "/tmp"}
    variables |= {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name, value in {**variables, **(env or {})}.items():
        box += ["--setenv", name, str(value)]
    limit = ["prlimit", f"--as={limits.memory_mb << 20}", f"--nproc={limits.processes}"]
    limit += [f"--fsize={limits.file_mb << 20}", f"--cpu={limits.cpu_s}", "--"]
    drop = []
    if os.geteuid() == 0:  # as root the process limit does not count: run as a uid of this job slot
        uid = UID_BASE + slot
        os.chown(job, uid, uid)
        for path in job.rglob("*"):
            os.chown(path, uid, uid, follow_symlinks=False)
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]
        drop += ["--inh-caps=-all", "--bounding-set=-all"]
    else:
        box.insert(1, "--unshare-user")
    # env -i: bwrap's own processes (pid 1 inside) keep none of the grader's environment
    return ["timeout", "-s", "KILL", str(limits.wall_s), "env", "-i", *box, *drop, *limit, *argv]


def lock(job):
    """Once the sandboxed program has made its files in job (a kernel its sockets), it may create no
    more there: job is handed back to root. Only as root, where the program runs as a uid of its own;
    what it writes then goes to its capped /tmp."""
    if os.geteuid() == 0:
        os.chown(job, 0, 0)
        os.chmod(job, 0o755)


# Variables a grading kernel needs from the grader (everything else is cleared at the sandbox's door).
PASSED_ON = ("TINYTORCH_", "NBGRADER_", "PYTHONPATH", "MPLBACKEND", "OMP_", "OPENBLAS_", "MKL_")


def kernel_manager(job, readable, limits=None, slot=0):
    """A jupyter_client kernel manager class whose kernels start in the sandbox, in its private /tmp,
    talking to the grader over Unix sockets in job (no network at all), interrupted by message (a
    signal would stop bubblewrap, not the cell). Call lock(job) once the kernel is ready."""
    from jupyter_client.manager import AsyncKernelManager

    job = Path(job).resolve()

    class SandboxedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport, self.ip = "ipc", str(job / "kernel")
            self.connection_file = str(job / "kernel.json")

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            self.kernel_spec.interrupt_mode = "message"
            os.chmod(self.connection_file, 0o644)  # read by the kernel's own uid; only its sandbox sees job
            env = {k: v for k, v in kw.get("env", {}).items() if k.startswith(PASSED_ON)}
            env["IPYTHONDIR"] = "/tmp/ipython"
            kw["cwd"] = str(job)
            sandboxed = command(kernel_cmd, job, readable, limits, slot, env, workdir="/tmp")
            return await super()._async_launch_kernel(sandboxed, **kw)

    return SandboxedKernelManager


# ---------------------------------------------------------------- grading without the sandbox
ALLOW_UNSANDBOXED = "TINYTORCH_NO_SANDBOX"  # =1: grade without the sandbox (tito grade --no-sandbox)


def unsandboxed_allowed():
    return os.environ.get(ALLOW_UNSANDBOXED) == "1"


def wanted():
    """Whether grading uses the sandbox (nbgrader_config.py's default): wherever it can run, unless
    TINYTORCH_NO_SANDBOX=1."""
    return available() is None and not unsandboxed_allowed()


def grading_problem(sandbox):
    """What is wrong with grading when GradingExecute.sandbox is `sandbox`: None (nothing), or
    (refuse, text). Without the sandbox, student code runs with the grader's rights: as root that is
    refused unless TINYTORCH_NO_SANDBOX=1 (tito grade --no-sandbox) allows it; otherwise a warning."""
    reason = available()
    if sandbox:
        if reason is None:
            return None
        return True, f"the grading sandbox is configured but cannot start: {reason}."
    why = reason or (f"{ALLOW_UNSANDBOXED}=1" if unsandboxed_allowed() else "c.GradingExecute.sandbox = False")
    if os.geteuid() == 0 and not unsandboxed_allowed():
        return True, (
            f"refusing to grade as root without the grading sandbox ({why}): students' code would run as "
            "root. Install bubblewrap, or allow unsandboxed grading explicitly with "
            f"`tito grade --no-sandbox` ({ALLOW_UNSANDBOXED}=1 for nbgrader)."
        )
    return False, (
        f"GRADED WITHOUT THE SANDBOX ({why}): students' code ran with the grader's rights: it could read "
        "every file the grader can (the datasets with their test labels, source/ with the solutions, other "
        "submissions, the grader's environment in /proc) and use the network."
    )


@functools.cache
def _check_class():
    from nbconvert.preprocessors import Preprocessor
    from traitlets import Bool

    class SandboxCheck(Preprocessor):
        """The first autograde step (nbgrader_config.py): grading without the sandbox is refused as
        root (unless allowed) and warned about in the log otherwise; grading with a sandbox that
        cannot start is refused (every kernel would die and every test score zero)."""

        enabled = Bool(True)  # nbconvert's preprocessors are off unless enabled

        def preprocess(self, nb, resources):
            problem = grading_problem(bool(self.config.GradingExecute.get("sandbox", False)))
            if problem and problem[0]:
                raise UnsandboxedGradingError(problem[1])
            if problem:
                self.log.warning("!" * 20 + " " + problem[1])
            return nb, resources

    return SandboxCheck


class UnsandboxedGradingError(RuntimeError):
    """Grading refused: the sandbox cannot run, or is off as root without permission."""


def __getattr__(name):  # SandboxCheck imports nbconvert: only when nbgrader asks for it
    if name == "SandboxCheck":
        return _check_class()
    raise AttributeError(name)
