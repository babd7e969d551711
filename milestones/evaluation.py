"""The evaluation process: the trained weights judged by the course's own tinytorch, no student code.

`python -I -m milestones.evaluation JOBDIR`, started by milestones.judge.evaluate_models in a folder
of the grader's own. It imports the tinytorch at the job's package_parent (the reference solutions
when grading) and nothing of the student's: it rebuilds the two models the student process
described (milestones.model_spec: allow-listed classes, arrays without pickle), puts them in eval
mode and writes the milestone's outputs for the test inputs (milestone.evaluate) to outputs.npz,
or the reason it could not to failure.txt.
"""

import importlib
import json
import sys
from pathlib import Path

import numpy as np


def _explain(err):
    """An error raised by the course's own layers running the student's weights, in the student's terms."""
    from milestones.judge import MilestoneFailure

    text = str(err) if isinstance(err, MilestoneFailure) else f"{type(err).__name__}: {err}"
    return (
        "The judge evaluates your trained weights with the course's own tinytorch layers, and that "
        f"failed: {text}\nYour layers must keep their parameters and settings under the names the "
        "modules ask for (Linear's weight (in, out) and bias, Conv2d's weight (kh, kw, in, out), "
        "BatchNorm's running_mean and running_var, ...)."
    )


def main(job):
    from milestones.judge import NOT_FINITE, MilestoneFailure, NotFinite
    from milestones.model_spec import ModelRefused, load_arrays, rebuild

    job = Path(job)
    spec = json.loads((job / "job.json").read_text())
    recipe = spec["recipe"]
    try:
        sys.path.insert(0, spec["package_parent"])
        tinytorch = importlib.import_module("tinytorch")
        milestone = importlib.import_module(spec["milestone"])
        result = json.loads((job / "result.json").read_text())
        arrays = load_arrays(result["arrays"], (job / "arrays.bin").read_bytes())
        evaluation = {p.stem: np.load(p, allow_pickle=False) for p in sorted((job / "evaluation").glob("*.npy"))}
        outputs = {}
        for which in ["fresh", "trained"]:
            model = rebuild(result["models"].get(which), arrays, tinytorch, recipe.get("max_numbers"))
            try:
                model.eval()
                produced = milestone.evaluate(tinytorch, model, evaluation, recipe, trained=which == "trained")
            except (ModelRefused, NotFinite):
                raise
            except Exception as err:
                raise ModelRefused(_explain(err)) from err
            outputs.update({f"{which}/{name}": np.asarray(value) for name, value in produced.items()})
        np.savez(job / "outputs.npz", **outputs)
    except (ModelRefused, MilestoneFailure) as err:
        (job / "failure.txt").write_text(str(err))
        if isinstance(err, NotFinite):  # a model that did not learn, as one under the threshold
            (job / NOT_FINITE).write_text("")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
