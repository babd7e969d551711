"""Shared pytest set-up: keep Jupyter out of ~, find the data, and build the reference tinytorch once."""

import os
import tempfile
from pathlib import Path

import pytest

import tito  # noqa: F401  (first: one BLAS thread for this process and every kernel it starts)

REPO = Path(__file__).resolve().parent

_jupyter_home = Path(tempfile.mkdtemp(prefix="tinytorch-jupyter-"))
for var in ["JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"]:
    os.environ[var] = str(_jupyter_home / var.lower())
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_report_header(config):
    return f"TINYTORCH_DATA={os.environ.get('TINYTORCH_DATA', '(unset: loaders will try to download)')}"


@pytest.fixture(scope="session")
def reference_tinytorch(tmp_path_factory):
    """The reference package of every module in source/, exported by the same exporter students use."""
    from tito.course import MODULES
    from tito.notebook import load_tinytorch

    modules = [m for m in MODULES if (REPO / "source" / m).is_dir()]
    tinytorch, report = load_tinytorch(REPO / "source", modules, tmp_path_factory.mktemp("reference"))
    assert not any(report.values()), report
    return tinytorch


# The longest tests start first, so that the two workers finish together instead of one waiting on the
# last long training (pyproject.toml's --no-loadscope-reorder keeps this order: by default pytest-xdist
# starts the groups with the most tests first, which put these last). Measured in CI, longest first.
LONGEST_FIRST = [
    "tests/test_autograde.py::test_revolution",  # grades 06-11, trains Milestone 2 twice, one module search (9 min)
    "tests/test_autograde.py::test_generation",  # grades modules 12-16 and trains Milestone 3 (8 min)
    "milestones/generation/test_chatgpt_milestone.py::test_judge_fails_a_broken_model",  # two M3 trainings (3-5 min each)
    "tests/test_simulated_class.py",  # 114 submissions (4-5 min)
    "tests/test_browser",  # JupyterLab in chromium, Milestones 2 and 3 trained briefly (4 min)
    "tests/test_autograde.py",  # modules 01-05 and Milestone 1, with every trick (3 min)
]


def pytest_collection_modifyitems(config, items):
    def rank(item):
        for i, prefix in enumerate(LONGEST_FIRST):
            if item.nodeid.startswith(prefix):
                return i
        return len(LONGEST_FIRST) + (0 if item.get_closest_marker("slow") else 1)

    items.sort(key=rank)  # stable: the order within each rank is pytest's
