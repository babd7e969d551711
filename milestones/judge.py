"""The judge core shared by the milestones: train with a student's tinytorch, and judge the trained
weights with the course's own code, where nothing of the student's can touch the verdict.

Three processes take part:
- the **grader** (pytest, `tito milestone test`, nbgrader's grading process, or the notebook's own
  check) loads the data, keeps the test inputs and labels, starts the two others, enforces the time
  budgets, and counts the correct answers itself;
- the **student process** (`python -I -m milestones.judge WORKDIR`, started fresh in an empty
  folder, so no file beside a notebook can shadow a course module; in a sandbox when grading)
  imports the student's exported tinytorch, runs their build_model cell, trains with the
  milestone's recipe and describes the model as data (milestones.model_spec): once as build_model
  returned it, once trained. It receives the training data only: never a test input or label.
- the **evaluation process** (`python -I -m milestones.evaluation JOBDIR`, no student code runs in
  it) rebuilds both models from their descriptions with the *reference* tinytorch (the package
  exported from the course's source/ solutions; where there is no source/, on a student's own
  machine, the judged package itself) and computes their outputs on the test inputs. The model
  returned by build_model must score near chance (an untrained model); the trained one is judged.

What the student process writes is never trusted as a file: its result and failure message are
read only as regular files of bounded size, without following links (read_job_file).

A milestone's own file (e.g. foundation/test_lenet_milestone.py) supplies what is its own:
    CONFIG                                   its milestone.yml (threshold, recipe, default model)
    judge_inputs() -> (inputs, evaluation, answers)
                                             inputs (training data) go to the student process,
                                             evaluation (test inputs) to the evaluation process,
                                             answers stay in the grader
    train_model(tinytorch, build_model, inputs, recipe, log) -> (model, outputs, report)
                                             student side: the trained model, a few small arrays
                                             of checks (lists of numbers; the grader takes only
                                             those named in STUDENT_OUTPUTS), the report
    evaluate(tinytorch, model, evaluation, recipe, trained) -> dict of arrays
                                             evaluation side (reference tinytorch, eval mode)
    untrained_failure(fresh, answers) -> str or None
                                             why the model build_model returned is not untrained
    score(outputs, answers) -> float         the grader's own count
    failure_hint(accuracy) -> str            what to look at when the threshold is missed
A milestone judged on more than one number (Milestone 3) has score() return a dict: "measure" (the
headline number, compared with the threshold), further numbers for the banner and the tests, and
"failures", a list of reasons the milestone is not reached (empty when it is).
and uses the student-side helpers here: check_logits, check_one_step (a first training step with
every part on its own) and speed_check (an estimate of the training time before training starts).
"""

import _thread
import atexit
import importlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tito import KEEP_FREED_MEMORY
from tito.checks import to_numpy
from tito.errors import name_unwritten, student_traceback

MODEL_CELL_FILE = "build_model cell"


class MilestoneFailure(AssertionError):
    """The milestone was not reached; the message says which step failed and what to look at."""


class NotFinite(MilestoneFailure):
    """The model's outputs are NaN or inf: training blew up (from the course's layers, a model that did
    not learn; milestones.evaluation reports it as such)."""


class BelowThreshold(MilestoneFailure):
    """The model trained, and the judge's count stayed under the milestone: the one failure whose
    message cannot name the module at fault (milestones.diagnosis looks for it in grading)."""

    def __init__(self, message, measure):
        super().__init__(message)
        self.measure = measure


@dataclass
class Result:
    accuracy: float  # counted by the grader
    train_seconds: float  # reported by the student process (for the banner only)
    epochs: int = 0  # or steps, for a milestone that counts steps (banner: unit)
    peak_memory_mb: float = 0.0  # of the training process
    details: dict = field(default_factory=dict)  # the other numbers of a dict score()


# ------------------------------------------------------------------------------ student side
@contextmanager
def step(what):
    """Turn any error raised by the student's code into a failure that names the step."""
    try:
        yield
    except MilestoneFailure:
        raise
    except Exception as err:
        name_unwritten(err)
        error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise MilestoneFailure(f"{what} failed: {error}") from err


def check_logits(out, n, classes, shape_hint):
    """The model's output as a numpy array, after checking it is (n, classes) and finite."""
    logits = to_numpy(out)
    if logits.shape != (n, classes):
        raise MilestoneFailure(
            f"for a batch of {n} images the model returned shape {logits.shape}; it must return "
            f"({n}, {classes}): one score (logit) per class. {shape_hint}"
        )
    if not np.all(np.isfinite(logits)):
        raise NotFinite(
            "the model's outputs contain NaN or inf: training blew up. Look for a learning rate that is "
            "too large, an initialisation with too large weights, or a gradient rule that is off "
            "(run the gradchecks of your modules)."
        )
    return logits


def guesses_or_why_not(logits, answers, limit):
    """For a classifier's untrained check: None when the model build_model returned guesses (a new model
    gets about one in ten right), else why it is not untrained. logits: for the first test images."""
    accuracy = float(np.mean(logits.argmax(axis=1) == answers[: len(logits)]))
    if accuracy > limit:
        return (
            f"before any training, the model it returned already gets {accuracy:.2%} of {len(logits):,} test images right "
            f"(a new model guesses: about 10%, at most {limit:.0%} here)."
        )
    return None


def check_one_step(tinytorch, model, optimizer, x, y, check_output, loss_fn=None, loss_name="CrossEntropyLoss"):
    """One training step with every part on its own, so a failure names its step.
    check_output(out) checks the forward pass's result; loss_fn(out, y) defaults to the student's
    CrossEntropyLoss. Use a throwaway model: this one has moved."""
    params = list(model.parameters())
    if not params:
        raise MilestoneFailure(
            "model.parameters() returned no parameters, so there is nothing to train. "
            "Module.parameters() must find the Parameters of every layer."
        )
    with step("optimizer.zero_grad()"):
        optimizer.zero_grad()
    with step("the forward pass"):
        out = model(x)
    check_output(out)
    with step(f"the loss ({loss_name})"):
        loss = (loss_fn or tinytorch.CrossEntropyLoss())(out, y)
    value = to_numpy(loss)
    if value.size != 1 or not np.isfinite(value).all():
        raise MilestoneFailure(f"the loss should be one finite number, got {value!r}.")
    with step("the backward pass (loss.backward())"):
        loss.backward()
    grads = [p.grad for p in params]
    if all(g is None for g in grads):
        raise MilestoneFailure(
            "after loss.backward() no parameter has a gradient (.grad is None): the "
            "graph from the parameters to the loss is not being recorded or walked."
        )
    for i, (p, g) in enumerate(zip(params, grads)):
        if g is not None and to_numpy(g).shape != to_numpy(p).shape:
            raise MilestoneFailure(
                f"parameter {i} has shape {to_numpy(p).shape} but its gradient has shape "
                f"{to_numpy(g).shape} (reduce gradients over broadcast axes)."
            )
    before = [to_numpy(p).copy() for p in params]
    with step("the optimizer step (optimizer.step())"):
        optimizer.step()
    if optimizer.lr > 0 and all(np.array_equal(b, to_numpy(p)) for b, p in zip(before, params)):
        raise MilestoneFailure("optimizer.step() changed no parameter: it must update p.data using p.grad.")


# ---- the speed check: how long would training take? ---------------------------------------------
class _OutOfTime(BaseException):  # BaseException: a student's `except Exception` cannot swallow it
    pass


class _Profile:
    """Seconds spent in each layer's forward and each op's gradient rule, and what is running now."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.running = []
        self.running_at_alarm = []

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            self.running.append(name)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.running.pop()

        return timed

    def top(self, total, n=5):
        rows = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:n]
        return "\n".join(f"    {seconds:8.2f} s  {seconds / total:4.0%}  {name}" for name, seconds in rows)


@contextmanager
def _profiled(tinytorch, model, profile):
    """Time every leaf layer's forward and every gradient rule of the student's autograd."""
    patched = []
    try:
        for name, module in model.named_modules():
            if len(module.modules()) == 1:  # a leaf: its forward does the work itself
                label = f"{type(module).__name__} ({name or 'the model'}) forward"
                module.forward = profile.wrap(label, module.forward)
                patched.append(module)
    except Exception:
        pass  # without named_modules the profile shows the gradient rules only
    rules = getattr(getattr(tinytorch, "autograd", None), "GRADIENTS", None)
    saved = dict(rules) if isinstance(rules, dict) else {}
    for op, rule in saved.items():
        rules[op] = profile.wrap(f"gradient of {op!r} (backward)", rule)
    try:
        yield
    finally:
        for module in patched:
            del module.forward
        if saved:
            rules.update(saved)


@contextmanager
def _time_limit(seconds, profile):
    """Raise _OutOfTime in this (the main) thread after `seconds`, noting what was running: a real-time
    timer signal where there is one, else (Windows) a timer thread that interrupts the main thread."""

    def note():
        profile.running_at_alarm = list(profile.running)

    if hasattr(signal, "setitimer"):

        def alarm(signum, frame):
            note()
            raise _OutOfTime()

        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    fired = threading.Event()

    def interrupt():
        note()
        fired.set()
        _thread.interrupt_main()

    timer = threading.Timer(seconds, interrupt)
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise _OutOfTime() from None
        raise
    finally:
        timer.cancel()


def speed_check(tinytorch, model, first_step, run_step, total_steps, budget_s, log, first_step_limit_s=20.0):
    """Time a few training steps on a throwaway model and stop early, with the reason, when the whole
    training (total_steps steps) would not fit in budget_s. first_step() performs the first step (it
    may check each part on its own: check_one_step), run_step() each further one."""
    profile = _Profile()

    def minutes(seconds):
        if seconds < 90:
            return f"{seconds:.0f} s"
        return f"{seconds / 60:.0f} min" if seconds < 5940 else f"{seconds / 3600:.1f} hours"

    with _profiled(tinytorch, model, profile):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            with _time_limit(first_step_limit_s, profile):
                first_step()  # it also warms up caches
        except _OutOfTime:
            still = profile.running_at_alarm[-1] if profile.running_at_alarm else "your code"
            raise MilestoneFailure(
                f"one training step took more than {first_step_limit_s:g} s and was stopped (it was in "
                f"{still}). Training needs {total_steps:,} steps within {minutes(budget_s)}, at most "
                f"{budget_s / total_steps:.2f} s per step: at this speed it would take more than "
                f"{minutes(first_step_limit_s * total_steps)}.\nWhere the time went:\n"
                f"{profile.top(time.perf_counter() - start)}\n"
                + _what_to_look_at(time.process_time() - cpu, time.perf_counter() - start)
            ) from None
        profile.seconds.clear()
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(2):
            with step("a training step of the speed check"):
                run_step()
        per_step = (time.perf_counter() - start) / 2
        cpu_s = time.process_time() - cpu
    estimate = per_step * total_steps
    if estimate > budget_s:
        raise MilestoneFailure(
            f"training would take about {minutes(estimate)} ({total_steps:,} steps at {per_step:.2f} s each); "
            f"the time budget is {minutes(budget_s)}, so it was not started.\nWhere one step spends its time:\n"
            f"{profile.top(2 * per_step)}\n" + _what_to_look_at(cpu_s, 2 * per_step)
        )
    log(f"speed check: {per_step:.2f} s per training step, about {minutes(estimate)} for {total_steps:,} steps")


def _what_to_look_at(cpu_s, wall_s):
    """The advice after a speed check's profile: the student's loops, unless the process mostly waited
    for a CPU (a busy machine makes honest code look slow; its profile says nothing about the code)."""
    share = cpu_s / wall_s if wall_s > 0 else 1.0
    if share < 0.5:
        return (
            f"This process ran only {share:.0%} of that time: the machine is busy with other work (or the "
            "code waits on something). Close other programs, or wait for other jobs to finish, and run it again."
        )
    return (
        "Look there for Python loops over pixels, channels or images: one numpy operation on the whole "
        "batch (strided windows and one matmul for a convolution) does the same work hundreds of times faster."
    )


def _peak_memory_mb():
    """This process's peak resident memory (0 where the resource module is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _in_student_code(filename):
    return Path(filename).parent.name == "tinytorch" or filename == MODEL_CELL_FILE


def _explain(err):
    """The failure message, then the student's own frames of the traceback (course code left out)."""
    text = str(err)
    cause = err.__cause__ or (None if isinstance(err, MilestoneFailure) else err)
    frames = student_traceback(cause, _in_student_code) if cause is not None else []
    if frames:
        text += "\n\nWhere it happened in your code (most recent call last):\n" + "\n".join(frames)
    return text


# The files the student process leaves in its work folder, each with the most bytes the grader reads.
RESULT, ARRAYS, FAILURE = "result.json", "arrays.bin", "failure.txt"
NOT_FINITE = "not-finite"  # written by the evaluation process beside failure.txt: the trained model's outputs blew up
RESULT_LIMIT, FAILURE_LIMIT = 16 << 20, 64 << 10
LOG_LINES = 5000  # lines of the student process's output passed on to the log; the rest is dropped


def _described(tinytorch, model, limit):
    from milestones.model_spec import ModelRefused, describe

    try:
        return describe(model, tinytorch, limit)
    except ModelRefused as err:
        raise MilestoneFailure(str(err)) from None


def _student_main(work):
    """Entry point of the student process (see the module docstring)."""
    work = Path(work)
    job = json.loads((work / "job.json").read_text())
    try:
        sys.path.insert(0, job["package_parent"])
        with step("importing your tinytorch"):
            tinytorch = importlib.import_module("tinytorch")
        namespace = {"np": np, "__name__": "__milestone__"}
        with step("running your build_model cell"):
            exec("from tinytorch import *", namespace)
            exec(compile(job["model_source"], MODEL_CELL_FILE, "exec"), namespace)
        build_model = namespace.get("build_model")
        if not callable(build_model):
            raise MilestoneFailure("the build_model cell must define a function build_model().")
        milestone = importlib.import_module(job["milestone"])
        recipe, built = job["recipe"], []

        def judged_build_model(*args, **kwargs):
            """build_model, and the new model described at once: before any training touches it."""
            model = build_model(*args, **kwargs)
            built.append((model, _described(tinytorch, model, recipe.get("max_numbers"))))
            return model

        inputs = {p.stem: np.load(p, mmap_mode="r") for p in sorted((work / "inputs").glob("*.npy"))}
        model, outputs, report = milestone.train_model(
            tinytorch, judged_build_model, inputs, recipe, log=lambda text: print(text, flush=True)
        )
        fresh = next((d for m, d in reversed(built) if m is model), None)
        if fresh is None:
            raise MilestoneFailure("the trained model is not a model that build_model() returned.")
        from milestones.model_spec import combine

        models, arrays, blob = combine(
            {"fresh": fresh, "trained": _described(tinytorch, model, recipe.get("max_numbers"))}
        )
        report["peak_memory_mb"] = _peak_memory_mb()
        (work / ARRAYS).write_bytes(blob)
        result = {"models": models, "arrays": arrays, "outputs": outputs, "report": report}
        (work / RESULT).write_text(json.dumps(result))
    except Exception as err:  # everything the student's code raised, told in their terms
        (work / FAILURE).write_text(_explain(err))
        return 2
    return 0


# ------------------------------------------------------------------------------------ grader side
def read_job_file(folder, name, limit):
    """The bytes of folder/name, written by a process the grader does not trust: None when there is no
    such file; a MilestoneFailure unless it is a regular file (not a link, a fifo, a device, a folder,
    nor a second name of another file) of at most `limit` bytes. Never follows a symbolic link."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    folder_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
    try:
        try:
            fd = os.open(name, flags, dir_fd=folder_fd)
        except FileNotFoundError:
            return None
        except OSError as err:  # ELOOP: a symbolic link; ENXIO: a socket; ...
            raise MilestoneFailure(
                f"the training process left {name} as something other than a regular file ({err.strerror}); "
                "the judge does not read it."
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise MilestoneFailure(
                    f"the training process left {name} as something other than a regular file of its own; "
                    "the judge does not read it."
                )
            if info.st_size > limit:
                raise MilestoneFailure(
                    f"the training process left {name} of {info.st_size:,} bytes; the judge reads at most {limit:,}."
                )
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                raise MilestoneFailure(f"the training process left {name} larger than {limit:,} bytes.")
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        os.close(folder_fd)


def _too_slow(seconds):
    return (
        f"training took longer than {seconds:g} s, the time budget of this milestone, and was stopped. "
        "Look for slow or infinite loops in your modules (Python loops over samples or elements "
        "where one numpy operation on the whole batch would do)."
    )


def _stream(pipe, log, lines):
    logged = 0
    for line in pipe:  # text mode: a progress bar's "\r" updates arrive as lines too
        if line.strip():  # a closing progress bar leaves a line of spaces
            lines.append(line.rstrip("\n")[:2000])
            logged += 1
            if logged <= LOG_LINES:
                log(lines[-1] if logged < LOG_LINES else "(more output of the training process not shown)")


def _sandboxed(argv, work, package, limits, env):
    """argv run in tito's sandbox (bubblewrap + limits): it sees the course's code, the exported
    package and work, nothing else."""
    from tito.sandbox import command, course_code, job_slot

    package_parent = Path(package).resolve().parent
    os.chmod(package_parent, 0o755)  # a private temporary folder; the sandbox's uid must read it
    return command(argv, work, [*course_code(), package_parent], limits, job_slot(), env, workdir="/tmp")


def _number(value, default=0.0):
    """A number of the student process's report (for the banner only), or default."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(float(value)) < 1e12
    return float(value) if ok else default


@dataclass
class StudentResult:
    """What the student process handed back, read as data: the two models' descriptions (JSON), their
    array bytes, its small outputs (lists of numbers) and its report (numbers for the banner)."""

    models: dict
    arrays: list
    blob: bytes
    outputs: dict
    report: dict


def _result(work, recipe):
    """The student process's result, read without trusting it as a file (see read_job_file)."""
    limit = int(recipe.get("max_numbers") or 50_000_000)
    text = read_job_file(work, RESULT, RESULT_LIMIT)
    blob = read_job_file(work, ARRAYS, 2 * 8 * limit + (1 << 20))
    if text is None or blob is None:
        raise MilestoneFailure("the training process ended without leaving its result.")
    try:
        result = json.loads(text)
        models, arrays = result["models"], result["arrays"]
        outputs, report = result.get("outputs") or {}, result.get("report") or {}
        if not (isinstance(models, dict) and isinstance(arrays, list)):
            raise TypeError
        if not (isinstance(outputs, dict) and isinstance(report, dict)):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise MilestoneFailure("the training process left a result the judge cannot read.") from None
    return StudentResult(models, arrays, blob, outputs, report)


def run_student_process(milestone, package, model_source, recipe, inputs, log=print, sandbox=None):
    """Train in a fresh process; return its StudentResult. Raises MilestoneFailure with the reason.
    sandbox: tito.sandbox.Limits to run the student's code in the grading sandbox (nbgrader does)."""
    budget = float(recipe["time_budget_s"])
    with tempfile.TemporaryDirectory(prefix="tinytorch-judge-") as work:
        work = Path(work)
        (work / "inputs").mkdir()
        for name, array in inputs.items():
            np.save(work / "inputs" / f"{name}.npy", array)
        (work / "job.json").write_text(
            json.dumps(
                {
                    "milestone": milestone.__name__,
                    "package_parent": str(Path(package).resolve().parent),
                    "model_source": model_source,
                    "recipe": recipe,
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYTORCH_DATA", "PYTHON"))}
        env.setdefault("TQDM_MININTERVAL", "10")  # a progress bar's line every 10 s in logs, not every batch
        # -I: neither the current folder nor PYTHONPATH nor user site-packages come on the import path
        argv = [sys.executable, "-I", "-m", "milestones.judge", str(work)]
        if sandbox is not None:
            # the sandbox's own time limits are a backstop: the time budget below stops it first
            limits = replace(sandbox, cpu_s=int(budget) + 60, wall_s=int(budget) + 60)
            # inside, only the allocator (tito/__init__.py) and progress-bar settings are passed on
            kept = [*KEEP_FREED_MEMORY, "TINYTORCH_MALLOC", "TQDM_MININTERVAL"]
            inside = {k: env[k] for k in kept if k in env}
            argv = _sandboxed(argv, work, package, limits, inside)
        proc = subprocess.Popen(
            argv,
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        lines = deque(maxlen=15)
        reader = threading.Thread(target=_stream, args=(proc.stdout, log, lines), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            if hasattr(os, "killpg"):  # its whole process group (Windows has none: the process alone)
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
            raise MilestoneFailure(_too_slow(budget)) from None
        finally:
            reader.join(timeout=5)
        if code != 0:
            failure = read_job_file(work, FAILURE, FAILURE_LIMIT)
            if failure is not None:
                raise MilestoneFailure(failure.decode("utf-8", errors="replace"))
            tail = "\n".join(lines)
            raise MilestoneFailure(
                f"the training process stopped with exit code {code} "
                f"(killed, out of memory, or os._exit in your code). Its last output:\n{tail}"
            )
        return _result(work, recipe)


# ---- the reference tinytorch and the evaluation process -----------------------------------------
_REFERENCES = {}


def reference_package(requires, judged, source=None):
    """The package whose layers judge the trained weights: the course's reference solutions (the
    notebooks in `source`, by default the course's source/, exported once per process by the course's
    exporter) when they are there; without them `judged` itself (a student's own machine, where a
    student can only fool themselves), unless `source` was named."""
    from tito.course import REPO

    notebooks = [Path(source or REPO / "source") / m / f"{m}.ipynb" for m in requires]
    if not all(p.is_file() for p in notebooks):
        if source is not None:  # named on purpose (a grader): never fall back to the judged package
            raise RuntimeError(f"the reference notebooks are not in {source}: {', '.join(requires)} needed.")
        return Path(judged)
    source = notebooks[0].parent.parent
    key = (tuple(requires), tuple(p.stat().st_mtime_ns for p in notebooks))
    if key not in _REFERENCES:
        from tito.notebook import build_tinytorch

        dest = tempfile.mkdtemp(prefix="tinytorch-reference-")
        atexit.register(shutil.rmtree, dest, ignore_errors=True)
        package, report = build_tinytorch(source, requires, dest)
        problems = [p for found in report.values() for p in found]
        if problems:
            raise RuntimeError("the course's reference solutions do not export cleanly:\n  " + "\n  ".join(problems))
        os.chmod(dest, 0o755)
        _REFERENCES[key] = Path(package)
    return _REFERENCES[key]


def evaluate_models(milestone, reference, result, evaluation, recipe, log=print):
    """Both models of a StudentResult, rebuilt with the tinytorch at `reference` and evaluated in a
    fresh process where no student code runs: {"fresh": outputs, "trained": outputs}."""
    budget = float(recipe.get("evaluation_budget_s", 600))
    with tempfile.TemporaryDirectory(prefix="tinytorch-evaluation-") as job:
        job = Path(job)
        (job / "evaluation").mkdir()
        for name, array in evaluation.items():
            np.save(job / "evaluation" / f"{name}.npy", array)
        (job / ARRAYS).write_bytes(result.blob)
        (job / RESULT).write_text(json.dumps({"models": result.models, "arrays": result.arrays}))
        (job / "job.json").write_text(
            json.dumps(
                {
                    "milestone": milestone.__name__,
                    "package_parent": str(Path(reference).resolve().parent),
                    "recipe": recipe,
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        argv = [sys.executable, "-I", "-m", "milestones.evaluation", str(job)]
        proc = subprocess.Popen(
            argv, cwd=job, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        lines = []  # its progress (Milestone 3's sampling takes a minute or two) reaches the log as it comes
        reader = threading.Thread(target=_stream, args=(proc.stdout, log, lines), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise MilestoneFailure(
                f"evaluating the trained model with the course's tinytorch took longer than {budget:g} s and was "
                "stopped: is the model far larger or deeper than the milestone's?"
            ) from None
        finally:
            reader.join(timeout=5)
        if code != 0:
            failure = job / FAILURE
            if failure.is_file() and (job / NOT_FINITE).is_file():  # no student code ran there: trusted
                raise BelowThreshold(failure.read_text(), None)
            if failure.is_file():
                raise MilestoneFailure(failure.read_text())
            tail = "\n".join(lines[-15:])
            raise MilestoneFailure(f"evaluating the trained model stopped with exit code {code}:\n{tail}")
        with np.load(job / "outputs.npz", allow_pickle=False) as saved:
            outputs = {"fresh": {}, "trained": {}}
            for key in saved.files:
                which, name = key.split("/", 1)
                outputs[which][name] = saved[key]
        return outputs


def _outputs(milestone, result):
    """The student process's small outputs (lists of numbers) as arrays: only those the milestone
    takes from it (STUDENT_OUTPUTS, e.g. the ids its tokenizer gives), never one the evaluation makes."""
    out = {}
    for name in getattr(milestone, "STUDENT_OUTPUTS", ()):
        value = result.outputs.get(name)
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            array = None
        if array is None or array.dtype.kind not in "iufb":
            raise MilestoneFailure(f"the training process's output {name!r} is not an array of numbers.")
        out[name] = array
    return out


def judge(
    milestone,
    package,
    model_source=None,
    log=print,
    who="your tinytorch",
    sandbox=None,
    reference=None,
    **recipe_changes,
):
    """Train the milestone with the tinytorch package at `package`, evaluate the trained weights with the
    reference tinytorch, score it here, require the threshold.

    model_source is the text of a cell defining build_model() (default: the milestone's default
    model); reference names the tinytorch whose layers evaluate the weights: a package folder (named
    tinytorch), or a folder of reference notebooks to export it from (an nbgrader course's source/);
    default: reference_package(), the course's source/ solutions, or `package` where there is none;
    recipe_changes override entries of the milestone's recipe (tests use this, e.g. lr=0).
    Returns a Result; raises MilestoneFailure (an AssertionError) with the reason otherwise.
    """
    from tito.course import milestone as course_milestone

    config = milestone.CONFIG
    recipe = {**config["judge"], **recipe_changes}
    inputs, evaluation, answers = milestone.judge_inputs()
    started = time.perf_counter()
    result = run_student_process(
        milestone, package, model_source or config["model"]["default_source"], recipe, inputs, log, sandbox
    )
    if reference is None or not (Path(reference) / "__init__.py").is_file():
        reference = reference_package(course_milestone(config["number"]).requires, package, reference)
    evaluated = evaluate_models(milestone, reference, result, evaluation, recipe, log)
    untrained = milestone.untrained_failure(evaluated["fresh"], answers)
    if untrained:
        raise MilestoneFailure(
            f"build_model must return an untrained model: {untrained} The judge trains the model itself, with "
            "your modules; build_model only builds it."
        )
    scored = milestone.score({**_outputs(milestone, result), **evaluated["trained"]}, answers)
    details = dict(scored) if isinstance(scored, dict) else {"measure": scored}
    accuracy = details.pop("measure")
    failures = details.pop("failures", None)
    if failures is None:
        failures = [milestone.failure_hint(accuracy)] if accuracy < config["threshold"] else []
    report = result.report
    result = Result(
        accuracy,
        _number(report.get("train_seconds"), time.perf_counter() - started),
        int(_number(report.get("epochs"))),
        _number(report.get("peak_memory_mb")),
        details,
    )
    if failures:
        raise BelowThreshold("\n\n".join(failures), accuracy)
    log(banner(config, result, who))
    return result


def judge_notebooks(
    milestone, folder, requires, model_source, log=print, who="your tinytorch", sandbox=None, reference=None
):
    """Export the required modules' notebooks from folder into a temporary package and judge it.
    A module that does not export cleanly fails the milestone with its problems listed."""
    from tito.notebook import build_tinytorch

    with tempfile.TemporaryDirectory(prefix="tinytorch-judged-") as build:
        package, report = build_tinytorch(folder, requires, build)
        problems = [p for found in report.values() for p in found]
        if problems:
            raise MilestoneFailure("your modules do not export cleanly:\n  " + "\n  ".join(problems))
        return judge(milestone, package, model_source, log=log, who=who, sandbox=sandbox, reference=reference)


def check_notebook(milestone, build_model):
    """A milestone notebook's check cell: the same judge as the grader, on the student's saved module
    notebooks (beside this notebook's folder) and the build_model cell they last ran."""
    from tito.course import milestone as course_milestone
    from tito.notebook import notebook_folder

    folder, _ = notebook_folder(Path.cwd())
    requires = course_milestone(milestone.CONFIG["number"]).requires
    return judge_notebooks(milestone, folder, requires, cell_defining(build_model))


def build_model_from(source):
    """The build_model function that a build_model cell's source defines, run against `from tinytorch import *`
    as in the student's notebook (the tinytorch imported now)."""
    namespace = {}
    exec("from tinytorch import *", namespace)
    exec(source, namespace)
    return namespace["build_model"]


def cell_defining(function):
    """The source of the notebook cell that last defined `function` (IPython keeps every input)."""
    import inspect

    try:
        history = get_ipython().user_ns.get("In", [])  # noqa: F821
    except NameError:
        history = []
    for cell in reversed(history):
        if f"def {function.__name__}(" in cell:
            return cell
    return inspect.getsource(function)


def banner(config, result, who):
    """The achievement message: what was reached, and what did the work."""
    from tito.course import milestone as course_milestone

    m = course_milestone(config["number"])
    unit = config["banner"].get("unit", "epoch")
    line = "=" * 72
    rows = [
        line,
        f"  MILESTONE {m.number} ACHIEVED: {m.name}",
        f"  {m.era}",
        f'  "{m.victory}"',
        "",
        f"  {config['banner']['measure']} {result.accuracy:.2%} (needed {config['threshold']:.0%})",
        *(f"  {line}" for line in result.details.get("banner", [])),
        f"  training time  {result.train_seconds:.1f} s for {result.epochs:,} {unit}{'s' if result.epochs != 1 else ''}",
        "",
    ]
    if who == "your tinytorch":
        rows.append(f"  Your {len(m.requires)} modules did all of it:")
        rows += [f"    {e['module']:<16} {e['contributes']}" for e in config["modules"]]
    else:
        rows.append(f"  Trained with {who}.")
    return "\n".join(rows + [line])


if __name__ == "__main__":
    # the student process: run as milestones.judge, not __main__, so that there is one MilestoneFailure
    from milestones.judge import _student_main as main

    sys.exit(main(sys.argv[1]))
