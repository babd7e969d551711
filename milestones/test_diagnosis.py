"""The search for the module at fault, with the short trainings replaced by a table of accuracies.
The real trainings run in tests/test_autograde.py and tests/test_simulated_class.py (a bug in 03, 05
or 06 found through grading)."""

import pytest

import milestones.diagnosis as diagnosis
from milestones.foundation import test_lenet_milestone as mnist
from tito.course import milestone

REQUIRES = milestone(1).requires  # 01_tensor ... 05_dense


def search(monkeypatch, accuracy_with):
    """module_at_fault where a run with the first k course modules reaches accuracy_with(k)."""
    runs = []

    def short_run(milestone, folder, source, requires, k, *args):
        runs.append(k)
        return accuracy_with(k)

    monkeypatch.setattr(diagnosis, "_short_run", short_run)
    monkeypatch.setattr(diagnosis, "reference_package", lambda *args: None)
    module, verdict = diagnosis.module_at_fault(mnist, "student", "source", REQUIRES, "model", log=lambda *_: None)
    return module, verdict, runs


@pytest.mark.parametrize("bug", range(len(REQUIRES)))
def test_the_first_module_whose_fix_lets_the_model_learn_is_named(monkeypatch, bug):
    # a bug in module `bug` (0-based): runs with the course's first k modules learn once k > bug
    module, verdict, runs = search(monkeypatch, lambda k: 0.93 if k > bug else 0.11)
    assert module == REQUIRES[bug] and f"Look at your {REQUIRES[bug]}:" in verdict
    assert len(runs) <= 2 + 3  # the two ends, then a binary search over five modules


def test_a_run_that_fails_counts_as_not_learning(monkeypatch):
    module, verdict, _ = search(monkeypatch, lambda k: 0.93 if k == 5 else None)
    assert module == "05_dense" and "stopped with an error" in verdict


def test_two_bugs_name_the_later_one_first(monkeypatch):
    # bugs in 02 and 04: only the course's 01-04 lets it learn; once 04 is fixed, 02 is next
    module, _, _ = search(monkeypatch, lambda k: 0.93 if k >= 4 else 0.11)
    assert module == "04_layers"


def test_a_model_that_does_not_learn_with_the_course_modules_is_the_model(monkeypatch):
    module, verdict, runs = search(monkeypatch, lambda k: 0.29)
    assert module == "build_model" and "Look at your build_model cell" in verdict and runs == [5]


def test_short_runs_that_learn_alike_name_nothing(monkeypatch):
    module, verdict, _ = search(monkeypatch, lambda k: 0.93 - 0.01 * (k == 0))
    assert module is None and "too close to tell" in verdict


def test_the_search_stops_at_its_budget(monkeypatch):
    clock = iter(range(0, 10_000, 100))  # every run takes 100 s
    monkeypatch.setattr(diagnosis.time, "perf_counter", lambda: next(clock))
    monkeypatch.setitem(mnist.CONFIG["diagnosis"], "budget_s", 150)
    module, verdict, runs = search(monkeypatch, lambda k: 0.93 if k == 5 else 0.11)
    assert module is None and "did not finish within 150 s" in verdict and runs == [5]
