"""The judge's speed check (milestones/judge.py) stops training that would not fit its time budget and
says why: the student's code, or a machine too busy to tell."""

import time
from types import SimpleNamespace

import pytest

from milestones.judge import MilestoneFailure, _what_to_look_at, speed_check


def _waiting():  # a step that mostly waits, as on a machine busy with other work
    time.sleep(0.05)


def _judged(one_step):
    with pytest.raises(MilestoneFailure) as failure:
        speed_check(SimpleNamespace(), object(), one_step, one_step, 1000, 1.0, log=print)
    return str(failure.value)


def test_slow_code_is_told_to_look_for_loops():
    # measured CPU and wall seconds: a process that computed all the time, then one that mostly waited
    assert "Python loops" in _what_to_look_at(cpu_s=0.95, wall_s=1.0)
    assert "busy" in _what_to_look_at(cpu_s=0.2, wall_s=1.0)


def test_a_busy_machine_is_named_instead_of_the_code():
    said = _judged(_waiting)
    assert "so it was not started" in said and "the machine is busy" in said and "Python loops" not in said, said
