"""Milestone 1 judge: train an MLP with *your* tinytorch on MNIST and measure its test accuracy.

pytest, `tito milestone test 1`, the notebook's check and nbgrader's grading all go through
milestones.judge.judge(), so they always agree. Your package supplies the model, the loss, the
optimizer and the training loop, in a fresh process that sees the training set only; the judge then
runs the trained weights through the course's own layers on the test images and counts the correct
answers itself. The recipe is milestone.yml.

Your package is called through this interface (later modules must keep it working):
    MLP(sizes), CrossEntropyLoss(), SGD(params, lr=, momentum=), Tensor(array), no_grad(),
    train_epoch(model, loss_fn, optimizer, X, y, batch_size=, rng=) -> mean loss,
    model(x) -> (N, 10) logits, model.parameters(), model.eval(), model.train()
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from milestones.judge import (
    MilestoneFailure,
    check_logits,
    check_notebook,
    check_one_step,
    guesses_or_why_not,
    judge,
    step,
)
from tito.checks import to_numpy

CONFIG = yaml.safe_load(Path(__file__).with_name("milestone.yml").read_text())
THRESHOLD = CONFIG["threshold"]


def mnist():
    """MNIST as float32 (N, 784) in [0, 1] and int64 labels; the loader caches it, read-only."""
    from tito.datasets import load_mnist

    return load_mnist()


# ---------------------------------------------------------------------------------- grader side
def judge_inputs():
    """What the student process gets (the training set), what the evaluation process gets (the test
    images), and the answers the grader keeps."""
    (X_train, y_train), (X_test, y_test) = mnist()
    return {"X_train": X_train, "y_train": y_train}, {"X_test": X_test}, y_test


def _logits(out, n):
    return check_logits(
        out, n, 10, "Check that the last Linear layer has 10 outputs and the first one takes 784 inputs."
    )


def score(outputs, answers):
    """Fraction of test images whose largest logit is the right digit: the grader's own count."""
    return float(np.mean(_logits(outputs["logits"], len(answers)).argmax(axis=1) == answers))


def untrained_failure(fresh, answers):
    """Why the model build_model returned is not untrained (None when it guesses, as a new one does)."""
    logits = fresh["logits"]  # for the first untrained_check_images test images
    return guesses_or_why_not(_logits(logits, len(logits)), answers, CONFIG["judge"]["untrained_max_accuracy"])


def failure_hint(accuracy):
    return (
        f"your model reached {accuracy:.2%} test accuracy; Milestone 1 needs {THRESHOLD:.0%}. "
        "With this recipe a correct tinytorch gets above 95% after one epoch. Near 10% means the model "
        "is guessing: check that gradients reach every parameter (the gradchecks of modules 02–05), "
        "that SGD.step updates p.data in place, and that train_epoch calls zero_grad, backward and "
        "step for every batch."
    )


# --------------------------------------------------------------------------------- student side
def _check_one_step(tinytorch, build_model, X, y, lr, momentum):
    """One training step on a small batch with a throwaway model (the judged one is built afterwards)."""
    with step("building the model (build_model())"):
        model = build_model()
    with step("model.parameters() and creating the optimizer (SGD)"):
        optimizer = tinytorch.SGD(list(model.parameters()), lr=lr, momentum=momentum)
    check_one_step(tinytorch, model, optimizer, tinytorch.Tensor(X), y, lambda out: _logits(out, len(X)))


def predict(tinytorch, model, X, batch_size=1000):
    """The model's logits for every image in X, in eval mode and without building a graph."""
    with step("model.eval()"):
        model.eval()
    chunks = []
    with tinytorch.no_grad():
        for start in range(0, len(X), batch_size):
            xb = np.array(X[start : start + batch_size])
            with step("the forward pass on the test images"):
                out = model(tinytorch.Tensor(xb))
            chunks.append(_logits(out, len(xb)))
    model.train()
    return np.concatenate(chunks)


def train(tinytorch, build_model, X_train, y_train, recipe, log=print):
    """Train a fresh model with the recipe; return (model, report)."""
    lr, momentum, seed = recipe["lr"], recipe["momentum"], recipe["seed"]
    _check_one_step(tinytorch, build_model, np.array(X_train[:32]), np.array(y_train[:32]), lr, momentum)
    np.random.seed(seed)  # tinytorch's initialisers draw from numpy's global generator
    with step("building the model (build_model())"):
        model = build_model()
    with step("creating the loss (CrossEntropyLoss) and the optimizer (SGD)"):
        loss_fn = tinytorch.CrossEntropyLoss()
        optimizer = tinytorch.SGD(model.parameters(), lr=lr, momentum=momentum)
    report = {"train_seconds": 0.0, "epochs": 0, "epoch_losses": []}
    for epoch in range(recipe["epochs"]):
        t0 = time.perf_counter()
        with step(f"training epoch {epoch + 1} (your train_epoch)"):
            loss = tinytorch.train_epoch(
                model,
                loss_fn,
                optimizer,
                X_train,
                y_train,
                batch_size=recipe["batch_size"],
                rng=np.random.default_rng(seed + epoch),
            )
        seconds = time.perf_counter() - t0
        try:
            loss = float(to_numpy(loss))
        except (TypeError, ValueError):
            raise MilestoneFailure(
                f"train_epoch should return the epoch's mean loss as a number, got {loss!r}."
            ) from None
        report["train_seconds"] += seconds
        report["epochs"] = epoch + 1
        report["epoch_losses"].append(loss)
        log(f"epoch {epoch + 1}/{recipe['epochs']}: mean training loss {loss:.4f} ({seconds:.1f} s)")
    return model, report


def train_model(tinytorch, build_model, inputs, recipe, log=print):
    """Student side of the judge: the model trained on the training set (and no other outputs)."""
    n = recipe.get("train_images")  # all 60,000 unless fewer are asked for (the diagnosis in grading)
    model, report = train(tinytorch, build_model, inputs["X_train"][:n], inputs["y_train"][:n], recipe, log)
    return model, {}, report


def evaluate(tinytorch, model, evaluation, recipe, trained):
    """Evaluation side (the course's tinytorch): the model's logits for the test images (the untrained
    model's for the first untrained_check_images of them: enough to tell a guess)."""
    X = evaluation["X_test"] if trained else evaluation["X_test"][: recipe["untrained_check_images"]]
    return {"logits": predict(tinytorch, model, X).astype(np.float32)}


# ------------------------------------------------------------------------------------ entry points
def judge_package(package, model_source=None, who="your tinytorch", **recipe_changes):
    """Judge the exported tinytorch at `package` (a folder named tinytorch)."""
    return judge(sys.modules[__name__], package, model_source, who=who, **recipe_changes)


def check(build_model):
    """The notebook's milestone check (see milestones.judge.check_notebook)."""
    check_notebook(sys.modules[__name__], build_model)


# ------------------------------------------------------------------------------------ pytest
def _quiet(*args, **kwargs):
    pass


def _package(module):
    return Path(module.__file__).parent


def test_reference_package_reaches_threshold(reference_tinytorch):
    result = judge_package(_package(reference_tinytorch), who="the reference solutions")
    assert result.accuracy >= THRESHOLD and result.epochs == 1


def test_student_process_never_sees_the_test_set():
    inputs, evaluation, answers = judge_inputs()
    assert sorted(inputs) == ["X_train", "y_train"] and sorted(evaluation) == ["X_test"]
    assert len(answers) == len(evaluation["X_test"])
    assert not any(np.shares_memory(answers, array) for array in [*inputs.values(), *evaluation.values()])


def test_judge_fails_a_model_that_does_not_learn(reference_tinytorch):
    import pytest  # only the tests need it; the notebooks import this file without pytest

    # lr=0: the weights never move, so the network guesses (about 10%) and the threshold must fail
    with pytest.raises(AssertionError, match="Milestone 1 needs 85%"):
        judge(sys.modules[__name__], _package(reference_tinytorch), lr=0.0, log=_quiet)


def test_judge_names_the_failing_step_and_shows_where(reference_tinytorch):
    import pytest

    unwritten = "def build_model():\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    with pytest.raises(
        AssertionError, match="(?s)building the model.*build_model\\(\\) is not written yet.*build_model cell, line 3"
    ):
        judge_package(_package(reference_tinytorch), unwritten, log=_quiet)
    with pytest.raises(AssertionError, match=r"must return \(32, 10\)"):
        judge_package(_package(reference_tinytorch), "def build_model():\n    return MLP([784, 32, 7])\n")


def test_judge_stops_training_that_runs_too_long(reference_tinytorch):
    import pytest

    endless = "def build_model():\n    while True:\n        pass\n"
    start = time.perf_counter()
    with pytest.raises(AssertionError, match="took longer than 3 s"):
        judge_package(_package(reference_tinytorch), endless, time_budget_s=3, log=_quiet)
    assert time.perf_counter() - start < 30


def test_in_the_grading_sandbox_student_code_has_no_network_no_course_files_and_a_memory_limit(reference_tinytorch):
    import pytest

    from tito.sandbox import Limits, available

    if available() is not None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(available())
    source = Path(__file__).resolve().parents[2] / "source"
    probe = (
        "def build_model():\n"
        "    import os, socket\n"
        "    try:\n"
        "        socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "        network = 'reachable'\n"
        "    except OSError as err:\n"
        "        network = err.strerror\n"
        f"    seen = os.path.exists({str(source)!r})\n"
        "    raise RuntimeError(f'network: {network}; course source seen: {seen}')\n"
    )
    package = _package(reference_tinytorch)
    with pytest.raises(AssertionError, match="network: Network is unreachable; course source seen: False"):
        judge_package(package, probe, log=_quiet, sandbox=Limits())
    greedy = "def build_model():\n    return np.ones(50 * 2**30 // 8)\n"
    with pytest.raises(AssertionError, match="(?s)building the model.*Unable to allocate 50.0 GiB"):
        judge_package(package, greedy, log=_quiet, sandbox=Limits(memory_mb=2048))


def test_a_drawing_becomes_an_mnist_digit_the_way_mnist_digits_were_made():
    from milestones.foundation.demo_lenet_milestone import mnist_like

    (_, _), (X_test, _) = mnist()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(X_test), 50, replace=False):  # a test digit drawn 10x larger, anywhere on a canvas
        digit = X_test[i].reshape(28, 28)
        canvas = np.zeros((400, 400), np.float32)
        top, left = rng.integers(0, 400 - 280, size=2)
        canvas[top : top + 280, left : left + 280] = np.kron(digit, np.ones((10, 10), np.float32))
        assert np.corrcoef(mnist_like(canvas).ravel(), digit.ravel())[0, 1] > 0.999
    bar = np.zeros((280, 280), np.float32)
    bar[40:200, 150:170] = 1.0  # a tall thin stroke: its height becomes 20 pixels, its width stays thin
    image = mnist_like(bar)
    rows, cols = np.nonzero(image > 0.05)
    assert image.shape == (28, 28) and image.dtype == np.float32 and image.max() == 1.0
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 <= 4
    assert abs((image.sum(axis=1) @ np.arange(28)) / image.sum() - 14) <= 0.5
    assert not mnist_like(np.zeros((50, 50))).any()


def test_the_drawing_demo_reads_a_drawn_one_zero_and_seven(reference_tinytorch):
    """The widget's Python side, headless: a stroke's PNG arrives as the browser sends it."""
    import io

    from PIL import Image, ImageDraw

    from milestones.foundation.demo_lenet_milestone import digit_demo

    (X_train, y_train), _ = mnist()
    np.random.seed(0)
    model, _ = train(
        reference_tinytorch,
        lambda: reference_tinytorch.MLP([784, 256, 128, 10]),
        X_train,
        y_train,
        {**CONFIG["judge"], "epochs": 1},
        log=lambda *a: None,
    )
    demo = digit_demo(reference_tinytorch, model)
    canvas, guess = demo.children[0].children[0], demo.children[2]

    def stroke(*shapes):
        image = Image.new("L", (280, 280), 255)  # black ink on a white canvas, 280 x 280 like the widget's
        pen = ImageDraw.Draw(image)
        for kind, box in shapes:
            getattr(pen, kind)(box, **({"fill": 0} if kind == "line" else {"outline": 0}), width=22)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        canvas._msg_callbacks(canvas, {"type": "stroke"}, [buffer.getvalue()])
        return guess.value

    assert "reads: <b>1</b>" in stroke(("line", [(150, 50), (135, 230)]))
    assert "reads: <b>0</b>" in stroke(("ellipse", [80, 40, 200, 240]))
    assert "reads: <b>7</b>" in stroke(("line", [(70, 60), (210, 60)]), ("line", [(210, 60), (120, 240)]))
