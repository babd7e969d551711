"""What the course is made of: the module order, the milestones, and where notebooks live."""

from dataclasses import dataclass
from pathlib import Path

import yaml

MODULES = [
    "01_tensor",
    "02_autograd",
    "03_activations",
    "04_layers",
    "05_dense",
    "06_spatial",
    "07_dataloader",
    "08_optimizers",
    "09_normalization",
    "10_evaluation",
    "11_training",
    "12_tokenization",
    "13_embeddings",
    "14_attention",
    "15_transformer",
    "16_tinygpt",
]
REPO = Path(__file__).resolve().parent.parent
MILESTONES_DIR = REPO / "milestones"


@dataclass
class Milestone:
    number: int
    name: str
    era: str
    folder: str
    trigger: str
    requires: list
    threshold: str
    victory: str

    @property
    def assignment(self):
        return f"milestone_{self.number}"

    def judge_file(self):
        """This milestone's judge (milestones/<folder>/test_*_milestone.py), imported; None before it exists."""
        import importlib

        tests = sorted((MILESTONES_DIR / self.folder).glob("test_*_milestone.py"))
        return importlib.import_module(f"milestones.{self.folder}.{tests[0].stem}") if tests else None


def milestones():
    spec = yaml.safe_load((MILESTONES_DIR / "milestones.yml").read_text())
    return [
        Milestone(
            number=m["number"],
            name=m["name"],
            era=m["era"],
            folder=m["folder"],
            trigger=m["trigger_module"],
            requires=list(m["required_modules"]),
            threshold=m["threshold"],
            victory=m["victory"],
        )
        for m in spec["milestones"]
    ]


def milestone(number):
    for m in milestones():
        if m.number == int(number):
            return m
    raise SystemExit(f"There is no milestone {number}; the course has milestones 1, 2 and 3.")


def module_name(text):
    """Accept '05_dense', '05' or 'dense' and return the full module name."""
    for m in MODULES:
        if text in (m, m[:2], m[3:]):
            return m
    raise SystemExit(f"Unknown module {text!r}. Modules are: {', '.join(MODULES)}")


def prerequisites(assignment):
    """Modules whose code a notebook imports: the earlier modules, or a milestone's requirements."""
    if assignment in MODULES:
        return MODULES[: MODULES.index(assignment)]
    for m in milestones():
        if m.assignment == assignment:
            return m.requires
    raise ValueError(f"unknown assignment {assignment!r}")


def notebook_path(folder, assignment):
    return Path(folder) / assignment / f"{assignment}.ipynb"


# How long a notebook cell may run, in grading and in `tito module complete` alike. Cells tagged
# "training" (the milestones' training cells) train real models and get longer. A cell that runs
# over is interrupted and counts as failed; the rest of the notebook still runs.
def cell_timeout(cell):
    import os

    if "training" in cell.get("metadata", {}).get("tags", []):
        return int(os.environ.get("TINYTORCH_TRAINING_TIMEOUT", "900"))
    return int(os.environ.get("TINYTORCH_CELL_TIMEOUT", "60"))


# Kernels that tito and the grader start log errors only: the warning every kernel prints about
# plain-TCP transport on localhost tells a student or an instructor nothing they can act on.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def keep_out_of_home(folder):
    """Point IPython, matplotlib and Jupyter's runtime files at folder/.tito/ instead of ~ (unless set)."""
    import os

    base = Path(folder) / ".tito"
    for var, sub in [
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "matplotlib"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
    ]:
        if var not in os.environ:
            (base / sub).mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(base / sub)
