"""A trained milestone model on disk, so its demo can show it again without training.

A checkpoint is one `.npz` file in the workspace's `.tito/checkpoints/`: every tensor of the model
(parameters and buffers such as batch norm's running statistics) under its dotted attribute name,
plus the source of the `build_model` cell that made it, so the same model can be built again.
"""

import json
from pathlib import Path

import numpy as np


def _tensors(obj, name, seen, found):
    """(dotted name, tensor) for every tinytorch tensor reachable through attributes, lists and dicts."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(getattr(obj, "data", None), np.ndarray) and hasattr(obj, "backward"):
        found.append((name, obj))
        return
    if isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif isinstance(obj, dict):
        items = obj.items()
    elif hasattr(obj, "__dict__") and callable(getattr(obj, "parameters", None)):  # a Module
        items = vars(obj).items()
    else:
        return
    for key, value in items:
        _tensors(value, f"{name}.{key}" if name else str(key), seen, found)


def state_dict(model):
    """{dotted name: array copy} of every tensor in the model."""
    found = []
    _tensors(model, "", set(), found)
    return {name: np.array(t.data) for name, t in found}


def load_state_dict(model, state):
    """Put the saved arrays back into a model built the same way; says what does not match."""
    found = []
    _tensors(model, "", set(), found)
    mine = dict(found)
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    wrong = [
        f"{n}: saved {state[n].shape}, model {mine[n].data.shape}"
        for n in mine
        if n in state and state[n].shape != mine[n].data.shape
    ]
    if missing or extra or wrong:
        raise ValueError(
            "the checkpoint does not fit this model (was build_model changed since it was saved?)\n"
            + "".join(
                f"  {label}: {', '.join(items[:6])}\n"
                for label, items in [
                    ("not in the checkpoint", missing),
                    ("not in the model", extra),
                    ("other shape", wrong),
                ]
                if items
            )
        )
    for name, tensor in mine.items():
        tensor.data = state[name].astype(tensor.data.dtype, copy=True)
    return model


def checkpoint_path(number, start=None):
    """<workspace's package folder>/.tito/checkpoints/milestone_<number>.npz"""
    from tito.workspace import find_workspace, package_dir

    return package_dir(find_workspace(start)) / ".tito" / "checkpoints" / f"milestone_{number}.npz"


def save_checkpoint(model, number, model_source, build_args=(), start=None):
    """Save a trained model of milestone `number`; returns the path."""
    path = checkpoint_path(number, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"state/{name}": value for name, value in state_dict(model).items()}
    info = json.dumps({"milestone": number, "model_source": model_source, "build_args": list(build_args)})
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, info=np.array(info), **arrays)
    tmp.replace(path)  # a demo never reads half a file
    return path


def load_checkpoint(tinytorch, number, start=None):
    """The model saved for milestone `number`, built by its own build_model cell with this tinytorch."""
    path = checkpoint_path(number, start)
    if not path.exists():
        raise FileNotFoundError(
            f"No trained model for Milestone {number} yet ({path} is missing).\n"
            f"Run the training cells of milestone_{number}.ipynb once: they save it there."
        )
    with np.load(path) as saved:
        info = json.loads(str(saved["info"]))
        state = {key[len("state/") :]: saved[key] for key in saved.files if key.startswith("state/")}
    from milestones.judge import build_model_from

    model = load_state_dict(build_model_from(info["model_source"])(*info["build_args"]), state)
    if hasattr(model, "eval"):
        model.eval()
    return model


def trained_model(number, workspace):
    """(tinytorch built from the workspace's notebooks, the milestone's saved model) for a demo."""
    from tito.course import milestone
    from tito.export import describe
    from tito.notebook import build_tinytorch, import_tinytorch

    package, report = build_tinytorch(workspace, milestone(number).requires)
    if any(report.values()):
        print("Your tinytorch, built from your notebooks:", *describe(report), sep="\n")
    tinytorch = import_tinytorch(package)
    return tinytorch, load_checkpoint(tinytorch, number, start=workspace)


def notebook_checkpoint(model, number, build_model, build_args=()):
    """What a milestone notebook calls after training: save the model beside the student's progress."""
    from milestones.judge import cell_defining

    path = save_checkpoint(model, number, cell_defining(build_model), build_args, start=Path.cwd())
    print(f"Saved your trained model to {path.name} (for `tito milestone demo {number}`).")
    return path
