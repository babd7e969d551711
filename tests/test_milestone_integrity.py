"""Dishonest milestone submissions: the verdict follows from the trained weights, judged by the course's
own layers, and nothing the training process leaves behind is trusted as a file.

Each trick here got full marks (or leaked a file) when the training process itself answered the
test inputs. Milestone 1 trains in seconds, so its tricks are judged for real; the others are
refused before any training, or checked on the grader's code directly.
"""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from milestones.foundation import test_lenet_milestone as m1
from milestones.generation import test_chatgpt_milestone as m3
from milestones.judge import MilestoneFailure, judge, read_job_file, reference_package
from milestones.revolution import test_alexnet_milestone as m2


def quiet(*args, **kwargs):
    pass


def package(tinytorch):
    return Path(tinytorch.__file__).parent


def mnist_test_labels():
    return "".join(map(str, m1.mnist()[1][1]))


# ---------------------------------------------------------------------------------- Milestone 1
ANSWERS_CLASS = """
LABELS = np.array([int(c) for c in "{labels}"])


class Answers(Module):  # trains as an MLP; in eval mode answers the test images from the pasted labels
    def __init__(self):
        self.mlp = MLP([784, 1, 10])
        self.seen = 0

    def forward(self, x):
        if self.training:
            return self.mlp(x)
        out = np.full((len(x), 10), -10.0, np.float32)
        out[np.arange(len(x)), LABELS[self.seen : self.seen + len(x)]] = 10.0
        self.seen += len(x)
        return Tensor(out)


def build_model():
    return Answers()
"""

ANSWERS_PATCHED_CLASS = """
import tinytorch

LABELS = np.array([int(c) for c in "{labels}"])
train_forward = tinytorch.Sequential.forward
seen = [0]


def answer(self, x):  # every Sequential answers from the pasted labels in eval mode
    if self.training:
        return train_forward(self, x)
    out = np.full((len(x), 10), -10.0, np.float32)
    out[np.arange(len(x)), LABELS[seen[0] : seen[0] + len(x)]] = 10.0
    seen[0] += len(x)
    return Tensor(out)


tinytorch.Sequential.forward = answer


def build_model():
    return MLP([784, 1, 10])  # one hidden unit: about 35% when it answers for itself
"""

ANSWERS_ON_THE_INSTANCE = """
def build_model():
    model = MLP([784, 256, 128, 10])
    model.forward = lambda x: Tensor(np.zeros((len(x), 10), np.float32))
    return model
"""

RIDGE = """
import sys
from pathlib import Path


def build_model():  # least squares on the judge's own training files: tinytorch learns nothing
    inputs = Path(sys.argv[1]) / "inputs"
    X, y = np.load(inputs / "X_train.npy"), np.load(inputs / "y_train.npy")
    Y = np.eye(10, dtype=np.float32)[y]
    W = np.linalg.solve(X.T @ X + 10.0 * np.eye(784, dtype=np.float32), X.T @ Y)
    model = Sequential(Linear(784, 10))
    model.layers[0].weight.data[...] = W
    return model
"""


def test_labels_pasted_in_a_class_of_the_build_model_cell_are_refused_before_training(reference_tinytorch):
    source = ANSWERS_CLASS.replace("{labels}", mnist_test_labels())
    with pytest.raises(
        MilestoneFailure, match="the model is an instance of Answers, a layer class defined in the build_model cell"
    ):
        m1.judge_package(package(reference_tinytorch), source, log=quiet)


def test_labels_answered_by_a_patched_tinytorch_class_count_for_nothing(reference_tinytorch):
    """The class is tinytorch's own, patched from the cell: the course's Sequential judges the weights."""
    source = ANSWERS_PATCHED_CLASS.replace("{labels}", mnist_test_labels())
    with pytest.raises(MilestoneFailure, match="Milestone 1 needs 85%"):
        m1.judge_package(package(reference_tinytorch), source, log=quiet)


def test_labels_answered_by_the_students_own_modules_count_for_nothing(reference_tinytorch, tmp_path):
    """The same answers from the student's exported Sequential: with the course's source/ at hand, the
    weights are evaluated by the reference package, never by the judged one."""
    student = tmp_path / "tinytorch"
    shutil.copytree(package(reference_tinytorch), student)
    patch = ANSWERS_PATCHED_CLASS.replace("{labels}", mnist_test_labels()).split("def build_model")[0]
    with open(student / "dense.py", "a") as dense:
        dense.write("\nimport numpy as np\nfrom tinytorch.tensor import Tensor\n" + patch)
    with pytest.raises(MilestoneFailure, match="Milestone 1 needs 85%"):
        judge(m1, student, "def build_model():\n    return MLP([784, 1, 10])\n", log=quiet)
    assert reference_package(["01_tensor"], student) != student  # source/ is here: the reference judges


def test_a_forward_replaced_on_the_instance_is_refused(reference_tinytorch):
    with pytest.raises(MilestoneFailure, match=r"method forward\(\) replaced on the instance"):
        m1.judge_package(package(reference_tinytorch), ANSWERS_ON_THE_INSTANCE, log=quiet)


def test_a_model_fitted_inside_build_model_fails_as_not_untrained(reference_tinytorch):
    with pytest.raises(
        MilestoneFailure,
        match=r"build_model must return an untrained model: .* already gets [5-9]\d\.\d\d% of 2,000 test images",
    ):
        m1.judge_package(package(reference_tinytorch), RIDGE, log=quiet)


def test_a_model_larger_than_the_milestone_allows_is_refused_before_training(reference_tinytorch):
    start = time.perf_counter()
    with pytest.raises(MilestoneFailure, match=r"stores 235,146 numbers .* at most 100,000"):
        m1.judge_package(package(reference_tinytorch), log=quiet, max_numbers=100_000)
    assert time.perf_counter() - start < 30


# ---------------------------------------------------------------------------------- Milestone 2
def test_milestone_2_refuses_a_class_of_the_build_model_cell_before_training(reference_tinytorch):
    source = ANSWERS_CLASS.replace("{labels}", "0" * 10000).replace(
        "MLP([784, 1, 10])", "Sequential(Flatten(), Linear(3072, 10))"
    )
    start = time.perf_counter()
    with pytest.raises(MilestoneFailure, match="a layer class defined in the build_model cell"):
        m2.judge_package(package(reference_tinytorch), source, log=quiet)
    assert time.perf_counter() - start < 60


# ---------------------------------------------------------------------------------- Milestone 3
LOOKUP = """
import glob, os, random, sysconfig


class Lookup(Module):  # trains as a GPT; in eval mode reads the next character from the standard library
    def __init__(self, vocab_size):
        self.gpt = GPT(GPTConfig(vocab_size=vocab_size, context=128, n_layers=1, d_model=32, n_heads=2))
        self.config = self.gpt.config

    def forward(self, ids):
        if self.training:
            return self.gpt(ids)
        library = glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))
        name = f"f_{random.randrange(10**6)}"
        return Tensor(np.zeros((*np.shape(ids), self.config.vocab_size), np.float32))  # (simplified)


def build_model(vocab_size):
    return Lookup(vocab_size)
"""


def test_milestone_3_refuses_a_lookup_model_of_the_build_model_cell_before_training(reference_tinytorch):
    start = time.perf_counter()
    with pytest.raises(MilestoneFailure, match="an instance of Lookup, a layer class defined in the build_model cell"):
        m3.judge_package(package(reference_tinytorch), LOOKUP, log=quiet)
    assert time.perf_counter() - start < 120


def test_milestone_3_counts_a_model_that_already_predicts_the_validation_text_as_not_untrained():
    _, _, answers = m3.judge_inputs()
    targets, vocab = answers["targets"], answers["vocab"]
    sure = np.full((*targets.shape, len(vocab)), -10.0, np.float32)
    np.put_along_axis(sure, targets[..., None], 10.0, axis=-1)
    assert "already has a validation loss of 0.00" in m3.untrained_failure({"validation_logits": sure}, answers)
    guessing = np.zeros_like(sure)
    assert m3.untrained_failure({"validation_logits": guessing}, answers) is None


# ------------------------------------------------------------------- files the training process leaves
def test_the_grader_reads_only_regular_files_of_bounded_size_without_following_links(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    job = tmp_path / "job"
    job.mkdir()
    (job / "fine.txt").write_text("ok")
    assert read_job_file(job, "fine.txt", 10) == b"ok"
    assert read_job_file(job, "missing.txt", 10) is None
    (job / "link.txt").symlink_to(secret)
    os.mkfifo(job / "fifo.txt")
    (job / "folder.txt").mkdir()
    os.link(secret, job / "hard.txt")
    (job / "big.txt").write_bytes(b"x" * 11)
    for name, why in [
        ("link.txt", "something other than a regular file"),
        ("fifo.txt", "something other than a regular file"),
        ("folder.txt", "something other than a regular file"),
        ("hard.txt", "something other than a regular file"),
        ("big.txt", "reads at most 10"),
    ]:
        start = time.perf_counter()
        with pytest.raises(MilestoneFailure, match=why) as err:
            read_job_file(job, name, 10)
        assert "TOP SECRET" not in str(err.value) and time.perf_counter() - start < 5, name


LEAK = """
import os, sys


def build_model():  # the failure message becomes a link to a file only the grader may read, then exit
    os.symlink({secret!r}, os.path.join(sys.argv[1], "failure.txt"))
    os._exit(2)
"""

FIFO = """
import os, sys


def build_model():  # a failure "file" the grader would wait on forever
    os.mkfifo(os.path.join(sys.argv[1], "failure.txt"))
    os._exit(2)
"""

HUGE = """
import os, sys


def build_model():
    with open(os.path.join(sys.argv[1], "failure.txt"), "w") as f:
        f.write("x" * (1 << 24))
    os._exit(2)
"""


def test_a_failure_file_turned_into_a_link_fifo_or_giant_is_not_read(reference_tinytorch, tmp_path):
    secret = tmp_path / "instructor.txt"
    secret.write_text("THE INSTRUCTOR'S SOLUTIONS")
    secret.chmod(0o600)
    for source, why in [
        (LEAK.replace("{secret!r}", repr(str(secret))), "left failure.txt as something other than a regular file"),
        (FIFO, "left failure.txt as something other than a regular file"),
        (HUGE, "left failure.txt of 16,777,216 bytes; the judge reads at most"),
    ]:
        start = time.perf_counter()
        with pytest.raises(MilestoneFailure, match=why) as err:
            m1.judge_package(package(reference_tinytorch), source, log=quiet)
        assert "INSTRUCTOR" not in str(err.value) and time.perf_counter() - start < 60


def test_without_the_course_s_source_the_judged_package_evaluates_itself(tmp_path, monkeypatch):
    import tito.course

    monkeypatch.setattr(tito.course, "REPO", tmp_path)  # a student's machine: no source/ folder
    assert reference_package(["01_tensor"], tmp_path / "tinytorch") == tmp_path / "tinytorch"


def test_the_reference_can_be_a_course_s_notebooks_or_a_package(reference_tinytorch, tmp_path):
    from tito.course import REPO

    requires = ["01_tensor", "02_autograd"]
    exported = reference_package(requires, tmp_path / "tinytorch", REPO / "source")
    assert (exported / "autograd.py").is_file() and exported == reference_package(requires, None)
    with pytest.raises(RuntimeError, match="the reference notebooks are not in"):
        reference_package(requires, tmp_path / "tinytorch", tmp_path)  # named, but empty: never the judged one
