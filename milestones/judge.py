"""The judge core shared by the milestones: train with a student's tinytorch where nothing of theirs
can touch the verdict.

Two processes take part:
- the **grader** (pytest, `tito milestone test`, nbgrader's grading process, or the notebook's own
  check) loads the data, keeps the test labels, starts the student process, enforces the time
  budget, and counts the correct answers itself;
- the **student process** (`python -I -m milestones.judge WORKDIR`, started fresh in an empty
  folder, so no file beside a notebook can shadow a course module) imports the student's exported
  tinytorch, runs their build_model cell, trains with the milestone's recipe and writes its
  predictions for the test inputs. It never receives the test labels.

A milestone's own file (e.g. foundation/test_lenet_milestone.py) supplies what is its own:
    CONFIG                                   its milestone.yml (threshold, recipe, default model)
    judge_inputs() -> (inputs, answers)      inputs go to the student process, answers stay here
    train_and_predict(tinytorch, build_model, inputs, recipe, log) -> dict of arrays (student side)
    score(outputs, answers) -> float         the grader's own count
    failure_hint(accuracy) -> str            what to look at when the threshold is missed
"""

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tito.errors import name_unwritten, student_traceback

MODEL_CELL_FILE = "build_model cell"


class MilestoneFailure(AssertionError):
    """The milestone was not reached; the message says which step failed and what to look at."""


@dataclass
class Result:
    accuracy: float  # counted by the grader
    train_seconds: float  # reported by the student process (for the banner only)
    epochs: int = 0


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
        inputs = {p.stem: np.load(p, mmap_mode="r") for p in sorted((work / "inputs").glob("*.npy"))}
        outputs, report = milestone.train_and_predict(
            tinytorch, build_model, inputs, job["recipe"], log=lambda text: print(text, flush=True)
        )
        np.savez(work / "outputs.npz", **outputs)
        (work / "report.json").write_text(json.dumps(report))
    except Exception as err:  # everything the student's code raised, told in their terms
        (work / "failure.txt").write_text(_explain(err))
        return 2
    return 0


# ------------------------------------------------------------------------------ grader side
def _too_slow(seconds):
    return (
        f"training took longer than {seconds:g} s, the time budget of this milestone, and was stopped. "
        "Look for slow or infinite loops in your modules (Python loops over samples or elements "
        "where one numpy operation on the whole batch would do)."
    )


def _stream(pipe, log, lines):
    for line in pipe:
        lines.append(line.rstrip("\n"))
        log(lines[-1])


def run_student_process(milestone, package, model_source, recipe, inputs, log=print):
    """Train in a fresh process; return (outputs, report). Raises MilestoneFailure with the reason."""
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
        # -I: neither the current folder nor PYTHONPATH nor user site-packages come on the import path
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "milestones.judge", str(work)],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines = []
        reader = threading.Thread(target=_stream, args=(proc.stdout, log, lines), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise MilestoneFailure(_too_slow(budget)) from None
        finally:
            reader.join(timeout=5)
        if code != 0:
            failure = work / "failure.txt"
            if failure.exists():
                raise MilestoneFailure(failure.read_text())
            tail = "\n".join(lines[-15:])
            raise MilestoneFailure(
                f"the training process stopped with exit code {code} "
                f"(killed, out of memory, or os._exit in your code). Its last output:\n{tail}"
            )
        with np.load(work / "outputs.npz") as outputs:
            outputs = {k: outputs[k] for k in outputs.files}
        return outputs, json.loads((work / "report.json").read_text())


def judge(milestone, package, model_source=None, log=print, who="your tinytorch", **recipe_changes):
    """Train the milestone with the tinytorch package at `package`, score it here, require the threshold.

    model_source is the text of a cell defining build_model() (default: the milestone's default
    model); recipe_changes override entries of the milestone's recipe (tests use this, e.g. lr=0).
    Returns a Result; raises MilestoneFailure (an AssertionError) with the reason otherwise.
    """
    config = milestone.CONFIG
    recipe = {**config["judge"], **recipe_changes}
    inputs, answers = milestone.judge_inputs()
    started = time.perf_counter()
    outputs, report = run_student_process(
        milestone, package, model_source or config["model"]["default_source"], recipe, inputs, log
    )
    accuracy = milestone.score(outputs, answers)
    result = Result(
        accuracy, float(report.get("train_seconds", time.perf_counter() - started)), int(report.get("epochs", 0))
    )
    if accuracy < config["threshold"]:
        raise MilestoneFailure(milestone.failure_hint(accuracy))
    log(banner(config, result, who))
    return result


def judge_notebooks(milestone, folder, requires, model_source, log=print, who="your tinytorch"):
    """Export the required modules' notebooks from folder into a temporary package and judge it.
    A module that does not export cleanly fails the milestone with its problems listed."""
    from tito.notebook import build_tinytorch

    with tempfile.TemporaryDirectory(prefix="tinytorch-judged-") as build:
        package, report = build_tinytorch(folder, requires, build)
        problems = [p for found in report.values() for p in found]
        if problems:
            raise MilestoneFailure("your modules do not export cleanly:\n  " + "\n  ".join(problems))
        return judge(milestone, package, model_source, log=log, who=who)


def banner(config, result, who):
    """The achievement message: what was reached, and what did the work."""
    from tito.course import milestone as course_milestone

    m = course_milestone(config["number"])
    line = "=" * 72
    rows = [
        line,
        f"  MILESTONE {m.number} ACHIEVED: {m.name}",
        f"  {m.era}",
        f'  "{m.victory}"',
        "",
        f"  {config['banner']['measure']} {result.accuracy:.2%} (needed {config['threshold']:.0%})",
        f"  training time  {result.train_seconds:.1f} s for {result.epochs} epoch{'s' if result.epochs != 1 else ''}",
        "",
    ]
    if who == "your tinytorch":
        rows.append(f"  Your {len(m.requires)} modules did all of it:")
        rows += [f"    {e['module']:<16} {e['contributes']}" for e in config["modules"]]
    else:
        rows.append(f"  Trained with {who}.")
    return "\n".join(rows + [line])


if __name__ == "__main__":
    sys.exit(_student_main(sys.argv[1]))
