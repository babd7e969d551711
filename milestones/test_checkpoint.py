"""A checkpoint brings back exactly the model that was trained: parameters and buffers, by name."""

import numpy as np
import pytest

from milestones.checkpoint import load_checkpoint, save_checkpoint
from milestones.judge import build_model_from

CNN = """
def build_model():
    return Sequential(Conv2d(3, 8, 3, padding=1), MaxPool2d(2), BatchNorm2d(8), ReLU(), Flatten(), Linear(16 * 16 * 8, 10))
"""


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "01_tensor").mkdir()
    (tmp_path / "01_tensor" / "01_tensor.ipynb").write_text("{}")
    return tmp_path


def build(tinytorch, source):
    return build_model_from(source)()


def test_a_saved_model_comes_back_with_its_parameters_and_batch_norm_statistics(reference_tinytorch, workspace):
    np.random.seed(0)
    model = build(reference_tinytorch, CNN)
    x = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)
    model(reference_tinytorch.Tensor(x))  # training mode: moves the running statistics away from 0 and 1
    model.eval()
    with reference_tinytorch.no_grad():
        before = model(reference_tinytorch.Tensor(x)).data

    path = save_checkpoint(model, 2, CNN, start=workspace)
    assert path == workspace / ".tito" / "checkpoints" / "milestone_2.npz"
    np.random.seed(1)  # a new model starts from other weights
    loaded = load_checkpoint(reference_tinytorch, 2, start=workspace)
    with reference_tinytorch.no_grad():
        after = loaded(reference_tinytorch.Tensor(x)).data
    assert not loaded.training
    np.testing.assert_array_equal(after, before)


def test_a_checkpoint_that_does_not_fit_says_what_differs(reference_tinytorch, workspace):
    model = build(reference_tinytorch, CNN)
    save_checkpoint(
        model,
        2,
        CNN.replace("Conv2d(3, 8", "Conv2d(3, 4")
        .replace("BatchNorm2d(8)", "BatchNorm2d(4)")
        .replace("16 * 16 * 8", "16 * 16 * 4"),
        start=workspace,
    )
    with pytest.raises(ValueError, match=r"other shape: layers\.0\.weight: saved \(3, 3, 3, 8\), model \(3, 3, 3, 4\)"):
        load_checkpoint(reference_tinytorch, 2, start=workspace)


def test_no_checkpoint_tells_which_notebook_saves_one(reference_tinytorch, workspace):
    with pytest.raises(FileNotFoundError, match="training cells of milestone_3.ipynb"):
        load_checkpoint(reference_tinytorch, 3, start=workspace)
