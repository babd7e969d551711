"""A workspace is a folder holding NN_name/NN_name.ipynb notebooks; progress lives in .tito/ beside them."""

import json
import time
from pathlib import Path

from tito.course import MODULES, notebook_path


def find_workspace(start=None):
    """The student's workspace (cwd or a parent holding module folders), or source/ in the course repo."""
    start = Path(start or Path.cwd()).resolve()
    for folder in [start, *start.parents]:
        if any(notebook_path(folder, m).exists() for m in MODULES):
            return folder
        if (folder / "source" / MODULES[0]).is_dir():
            return folder / "source"
    raise SystemExit(
        f"No course notebooks found in {start} or above it.\n"
        "Run tito from the folder that holds your module folders (01_tensor/, 02_autograd/, ...)."
    )


def is_reference(workspace):
    return Path(workspace).name == "source"


def package_dir(workspace):
    """Where `tito export` writes tinytorch/: beside a student's notebooks; build/reference/ for source/."""
    workspace = Path(workspace)
    return workspace.parent / "build" / "reference" if is_reference(workspace) else workspace


class Progress:
    """Completed modules and achieved milestones, kept in <workspace>/.tito/progress.json."""

    def __init__(self, workspace):
        self.path = package_dir(workspace) / ".tito" / "progress.json"
        try:
            self.data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            self.data = {"modules": {}, "milestones": {}}

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def completed(self, module):
        return module in self.data["modules"]

    def complete_module(self, module, summary):
        self.data["modules"][module] = {"completed": time.strftime("%Y-%m-%d %H:%M"), "checks": summary}
        self.save()

    def uncomplete_module(self, module):
        self.data["modules"].pop(module, None)
        self.save()

    def achieved(self, number):
        return self.data["milestones"].get(str(number))

    def achieve(self, number, accuracy, seconds):
        self.data["milestones"][str(number)] = {
            "achieved": time.strftime("%Y-%m-%d %H:%M"),
            "accuracy": accuracy,
            "train_seconds": seconds,
        }
        self.save()
