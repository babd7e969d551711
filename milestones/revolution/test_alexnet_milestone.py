"""Milestone 2 judge: train a CNN with *your* tinytorch on CIFAR-10 and measure its test accuracy.

pytest, `tito milestone test 2`, the notebook's check and nbgrader's grading all go through
milestones.judge.judge(), so they always agree. Your package supplies the model, the data pipeline,
the optimizer, the schedule and the training loop, in a fresh process that sees the training set
only; the judge then runs the trained weights through the course's own layers on the test images
and counts the correct answers itself. The recipe is milestone.yml.

Your package is called through this interface (later modules must keep it working):
    Conv2d, BatchNorm2d, MaxPool2d, ReLU, Flatten, Linear, Sequential (the default build_model),
    ArrayDataset(X, y), DataLoader(dataset, batch_size=, shuffle=, drop_last=, seed=, transform=),
    Normalize(mean, std), RandomHorizontalFlip(p, seed=), Compose([...]), CrossEntropyLoss(),
    Adam(params, lr=, weight_decay=), OneCycleLR(optimizer, max_lr=, total_steps=),
    Trainer(model, loss_fn, optimizer, scheduler=, progress=).fit(loader, epochs) -> history,
    model(x) -> (N, 10) logits, model.parameters(), model.named_modules(), model.eval(), no_grad(),
    tinytorch.autograd.GRADIENTS (the speed check times each gradient rule)
"""

import sys
import time
from pathlib import Path

import numpy as np
import yaml

from milestones.judge import (
    MilestoneFailure,
    build_model_from,
    check_logits,
    check_notebook,
    check_one_step,
    guesses_or_why_not,
    judge,
    speed_check,
    step,
)
from tito.checks import to_numpy

CONFIG = yaml.safe_load(Path(__file__).with_name("milestone.yml").read_text())
THRESHOLD = CONFIG["threshold"]


def cifar10():
    """CIFAR-10 as uint8 (N, 32, 32, 3) images and int64 labels; the loader caches it, read-only."""
    from tito.datasets import load_cifar10

    return load_cifar10()


# ---------------------------------------------------------------------------------- grader side
def judge_inputs():
    """What the student process gets (the training set), what the evaluation process gets (the test
    images), and the answers the grader keeps."""
    (X_train, y_train), (X_test, y_test) = cifar10()
    return {"X_train": X_train, "y_train": y_train}, {"X_test": X_test}, y_test


def _logits(out, n):
    return check_logits(
        out,
        n,
        10,
        "The model takes channels-last images (N, 32, 32, 3); check that the last Linear layer has 10 "
        "outputs and that its inputs match what Flatten produces (height x width x channels).",
    )


def score(outputs, answers):
    """Fraction of test images whose largest logit is the right class: the grader's own count."""
    return float(np.mean(_logits(outputs["logits"], len(answers)).argmax(axis=1) == answers))


def untrained_failure(fresh, answers):
    """Why the model build_model returned is not untrained (None when it guesses, as a new one does)."""
    logits = fresh["logits"]  # for the first untrained_check_images test images
    return guesses_or_why_not(_logits(logits, len(logits)), answers, CONFIG["judge"]["untrained_max_accuracy"])


def failure_hint(accuracy):
    return (
        f"your model reached {accuracy:.2%} test accuracy; Milestone 2 needs {THRESHOLD:.0%}. "
        "With this recipe a correct tinytorch gets about 70%. Near 10% means the model is guessing: "
        "check the gradchecks of Conv2d and BatchNorm (modules 06 and 09), that Adam and the one-cycle "
        "schedule change the learning rate as they should (module 08), and that Trainer.fit calls "
        "zero_grad, backward, step and the scheduler for every batch (module 11). Between 30% and 60%, "
        "part of the network is not learning: a gradient rule that is slightly off (conv weights, batch "
        "norm), eval() not reaching BatchNorm, a schedule stepped per epoch, or Normalize on the wrong axis."
    )


# --------------------------------------------------------------------------------- student side
def transform(tinytorch, recipe, train):
    """Normalize every batch; in training also flip images left-right at random (the student's code)."""
    normalize = tinytorch.Normalize(recipe["mean"], recipe["std"])
    if not train:
        return normalize
    return tinytorch.Compose([tinytorch.RandomHorizontalFlip(recipe["flip"], seed=recipe["seed"]), normalize])


def loader(tinytorch, X, y, recipe):
    with step("creating the DataLoader (ArrayDataset, DataLoader, Normalize, RandomHorizontalFlip, Compose)"):
        return tinytorch.DataLoader(
            tinytorch.ArrayDataset(X, y),
            batch_size=recipe["batch_size"],
            shuffle=True,
            drop_last=True,
            seed=recipe["seed"],
            transform=transform(tinytorch, recipe, train=True),
        )


def _first_batch(data, batch_size):
    with step("taking the first batch from the DataLoader"):
        x, y = next(iter(data))
    shape = to_numpy(x).shape
    if shape != (batch_size, 32, 32, 3) or to_numpy(x).dtype != np.float32:
        raise MilestoneFailure(
            f"the DataLoader's first batch holds images of shape {shape} and dtype {to_numpy(x).dtype}; "
            f"expected ({batch_size}, 32, 32, 3) float32: Normalize turns uint8 pixels into float32."
        )
    if len(y) != batch_size:
        raise MilestoneFailure(f"the DataLoader's first batch has {len(y)} labels for {batch_size} images.")
    return x, y


def _probe(tinytorch, build_model, X, y, recipe, total_steps, log):
    """A throwaway model: check one training step part by part, then estimate the training time."""
    x, labels = _first_batch(loader(tinytorch, X, y, recipe), recipe["batch_size"])
    with step("building the model (build_model())"):
        model = build_model()
    with step("model.parameters() and creating the optimizer (Adam)"):
        optimizer = tinytorch.Adam(list(model.parameters()), lr=recipe["max_lr"])
    loss_fn = tinytorch.CrossEntropyLoss()

    def first_step():
        check_one_step(tinytorch, model, optimizer, x, labels, lambda out: _logits(out, len(labels)))

    def one_step():
        optimizer.zero_grad()
        loss_fn(model(x), labels).backward()
        optimizer.step()

    limit = recipe["speed_check_first_step_s"]
    speed_check(tinytorch, model, first_step, one_step, total_steps, recipe["time_budget_s"], log, limit)


def train(tinytorch, build_model, X_train, y_train, recipe, log=print):
    """Train a fresh model with the recipe and the student's Trainer; return (model, report)."""
    data = loader(tinytorch, X_train, y_train, recipe)
    total_steps = recipe["epochs"] * len(data)
    _probe(tinytorch, build_model, X_train, y_train, recipe, total_steps, log)
    np.random.seed(recipe["seed"])  # tinytorch's initialisers and Dropout draw from numpy's global generator
    with step("building the model (build_model())"):
        model = build_model()
    with step("creating the loss, the optimizer (Adam), the schedule (OneCycleLR) and the Trainer"):
        optimizer = tinytorch.Adam(model.parameters(), lr=recipe["max_lr"], weight_decay=recipe["weight_decay"])
        scheduler = tinytorch.OneCycleLR(optimizer, max_lr=recipe["max_lr"], total_steps=total_steps)
        trainer = tinytorch.Trainer(model, tinytorch.CrossEntropyLoss(), optimizer, scheduler=scheduler, progress=True)
    start = time.perf_counter()
    with step("training (your Trainer.fit)"):
        history = trainer.fit(data, recipe["epochs"])
    seconds = time.perf_counter() - start
    if not isinstance(history, dict) or len(history.get("train_loss", [])) != recipe["epochs"]:
        raise MilestoneFailure(
            f"Trainer.fit should return its history with one train_loss per epoch ({recipe['epochs']}), got {history!r}."
        )
    report = {
        "train_seconds": seconds,
        "epochs": recipe["epochs"],
        "epoch_losses": list(map(float, history["train_loss"])),
    }
    return model, report


def predict(tinytorch, model, X, recipe, batch_size=1000):
    """The model's logits for every image in X (uint8), normalised batch by batch, in eval mode."""
    normalize = transform(tinytorch, recipe, train=False)
    with step("model.eval()"):
        model.eval()
    chunks = []
    with tinytorch.no_grad():
        for start in range(0, len(X), batch_size):
            with step("normalising the test images (Normalize)"):
                xb = tinytorch.Tensor(normalize(np.array(X[start : start + batch_size])))
            with step("the forward pass on the test images"):
                out = model(xb)
            chunks.append(_logits(out, len(xb)))
    model.train()
    return np.concatenate(chunks)


def train_model(tinytorch, build_model, inputs, recipe, log=print):
    """Student side of the judge: the model trained on the training set (and no other outputs)."""
    n = recipe.get("train_images")  # all 50,000 unless fewer are asked for (a test, the diagnosis)
    model, report = train(tinytorch, build_model, inputs["X_train"][:n], inputs["y_train"][:n], recipe, log)
    return model, {}, report


def evaluate(tinytorch, model, evaluation, recipe, trained):
    """Evaluation side (the course's tinytorch): the model's logits for the test images (the untrained
    model's for the first untrained_check_images of them: enough to tell a guess)."""
    X = evaluation["X_test"] if trained else evaluation["X_test"][: recipe["untrained_check_images"]]
    return {"logits": predict(tinytorch, model, X, recipe).astype(np.float32)}


# ------------------------------------------------------------------------------------ entry points
def judge_package(package, model_source=None, who="your tinytorch", **recipe_changes):
    """Judge the exported tinytorch at `package` (a folder named tinytorch)."""
    return judge(sys.modules[__name__], package, model_source, who=who, **recipe_changes)


def check(build_model):
    """The notebook's milestone check (see milestones.judge.check_notebook)."""
    check_notebook(sys.modules[__name__], build_model)


# ------------------------------------------------------------------------------------ pytest
try:  # the notebooks import this file where pytest may be missing
    import pytest

    slow = pytest.mark.slow  # trains for real: minutes
    parametrize = pytest.mark.parametrize
except ImportError:  # a course server installs the course without the test extras

    def slow(test):
        return test

    def parametrize(*args, **kwargs):
        return slow


def _quiet(*args, **kwargs):
    pass


def _package(module):
    return Path(module.__file__).parent


def test_student_process_never_sees_the_test_set():
    inputs, evaluation, answers = judge_inputs()
    assert sorted(inputs) == ["X_train", "y_train"] and sorted(evaluation) == ["X_test"]
    assert len(answers) == len(evaluation["X_test"])
    assert inputs["X_train"].dtype == np.uint8, "images travel as uint8: 150 MB, not 600 MB of float32"
    assert not any(np.shares_memory(answers, array) for array in [*inputs.values(), *evaluation.values()])


# The reference solutions reach the threshold with the full recipe: judged once, through nbgrader and the
# grading sandbox, in tests/test_autograde.py (test_revolution_reference_gets_full_marks_and_the_milestone).


@slow
def test_judge_fails_a_model_that_does_not_learn(reference_tinytorch):
    # max_lr=0: the weights never move, so the network guesses (about 10%) and the threshold must fail;
    # 20 batches show that as well as an epoch (a module bug that fails the full recipe: test_autograde.py)
    with pytest.raises(AssertionError, match=r"your model reached \d+\.\d+% test accuracy; Milestone 2 needs 65%"):
        judge(sys.modules[__name__], _package(reference_tinytorch), max_lr=0.0, epochs=1, train_images=2560, log=_quiet)


SLOW_CONV = """

# --- a student's first convolution: Python loops over images, pixels and channels ---
import numpy as np
from tinytorch.tensor import Tensor


def slow_conv2d(x, weight, bias, padding):
    n, h, w, cin = x.shape
    kh, kw, _, cout = weight.shape
    xp = np.pad(x.data, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out = np.zeros((n, h, w, cout), dtype=np.float32)
    for i in range(n):
        for r in range(h):
            for c in range(w):
                for o in range(cout):
                    out[i, r, c, o] = np.sum(xp[i, r:r + kh, c:c + kw, :] * weight.data[:, :, :, o]) + bias.data[o]
    return Tensor._make(out, (x, weight, bias), "conv2d", ctx=None)


def _slow_forward(self, x):
    return slow_conv2d(x, self.weight, self.bias, self.padding)


Conv2d.forward = _slow_forward
"""


def test_judge_stops_a_slow_implementation_within_seconds_and_says_why(reference_tinytorch, tmp_path):
    import shutil

    # a student's package whose Conv2d loops in Python: 128 images x 32 x 32 pixels x 24 channels,
    # 3 million Python iterations for the first layer alone, far over 5 s on any machine
    package = tmp_path / "tinytorch"
    shutil.copytree(_package(reference_tinytorch), package)
    with open(package / "spatial.py", "a") as spatial:
        spatial.write(SLOW_CONV)
    start = time.perf_counter()
    with pytest.raises(AssertionError, match=r"(?s)one training step took more than 5 s.*Conv2d.*forward"):
        judge_package(package, log=_quiet, speed_check_first_step_s=5)
    assert time.perf_counter() - start < 60


def test_judge_does_not_start_training_that_would_not_fit_its_budget(reference_tinytorch):
    with pytest.raises(AssertionError, match=r"(?s)training would take about .* the time budget is 10 s.*Conv2d"):
        judge_package(_package(reference_tinytorch), log=_quiet, time_budget_s=10)


def test_demo_shows_images_with_top3_guesses_and_a_confusion_matrix(reference_tinytorch, capsys):
    from milestones.revolution.demo_alexnet_milestone import main

    np.random.seed(0)
    main(
        reference_tinytorch, model=build_model_from(CONFIG["model"]["default_source"])(), samples=4, seed=0
    )  # untrained: no training time
    out = capsys.readouterr().out
    assert "three best guesses" in out and "Confusion matrix on the 10,000 test images" in out
    assert "\x1b[38;2;" in out, "images are drawn in 24-bit colour"


def test_an_uploaded_picture_becomes_a_cifar_image():
    from milestones.revolution.demo_alexnet_milestone import cifar_like

    (_, _), (X_test, _) = cifar10()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(X_test), 20, replace=False):  # a test photo at 4x, with borders left and right
        big = np.kron(X_test[i], np.ones((4, 4, 1), np.uint8))
        wide = np.concatenate([np.zeros((128, 40, 3), np.uint8), big, np.full((128, 40, 3), 255, np.uint8)], axis=1)
        back = cifar_like(wide)
        assert back.shape == (32, 32, 3) and back.dtype == np.uint8
        assert np.abs(back.astype(int) - X_test[i]).max() <= 1
    grey = cifar_like(np.full((50, 80), 200, np.uint8))  # grey and RGBA pictures become 3 channels
    rgba = cifar_like(np.full((90, 60, 4), 100, np.uint8))
    assert (grey == 200).all() and grey.shape == rgba.shape == (32, 32, 3)


def test_the_image_widget_classifies_test_photos_and_uploads(reference_tinytorch):
    import io

    from PIL import Image

    from milestones.revolution.demo_alexnet_milestone import image_demo

    (_, _), (X_test, y_test) = cifar10()
    np.random.seed(0)
    model = build_model_from(CONFIG["model"]["default_source"])()
    demo = image_demo(reference_tinytorch, model, X_test, y_test, seed=0)  # untrained
    upload, guesses = demo.children[0].children[2], demo.children[1].children[1]
    assert "test photo" in guesses.value and guesses.value.count("<li>") == 3
    buffer = io.BytesIO()
    Image.fromarray(np.kron(X_test[0], np.ones((5, 3, 1), np.uint8))).save(buffer, format="PNG")  # 160 x 96
    upload._msg_callbacks(upload, {"type": "picture", "name": "cat.png"}, [buffer.getvalue()])
    assert "your picture cat.png" in guesses.value and guesses.value.count("<li>") == 3
