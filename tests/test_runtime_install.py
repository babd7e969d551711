"""The course runs where only its runtime dependencies are installed (a course server's image: no
pytest, no playwright): every module a student's notebook, tito or the grader imports must import."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def runtime_modules():
    names = [f"tito.{p.stem}" for p in sorted((REPO / "tito").glob("*.py")) if p.stem != "__main__"]
    names += [
        f"milestones.{p.stem}" for p in sorted((REPO / "milestones").glob("*.py")) if not p.stem.startswith("test_")
    ]
    for era in sorted(p for p in (REPO / "milestones").iterdir() if (p / "milestone.yml").exists()):
        names += [f"milestones.{era.name}.{p.stem}" for p in sorted(era.glob("*_milestone.py"))]  # judges and demos
    return names


def test_every_runtime_module_imports_without_the_test_extras():
    modules = runtime_modules()
    assert "milestones.generation.test_chatgpt_milestone" in modules and "tito.cli" in modules
    blocked = "import sys\nfor name in ('pytest', 'playwright', 'xdist'):\n    sys.modules[name] = None\n"
    code = blocked + "".join(f"import {m}\n" for m in modules)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_first_step_time_limit_works_without_timer_signals(monkeypatch):
    # Windows has neither SIGALRM nor setitimer: a timer thread interrupts the main thread instead
    import signal
    import time

    import pytest

    from milestones.judge import _OutOfTime, _Profile, _time_limit

    monkeypatch.delattr(signal, "setitimer")
    profile = _Profile()
    profile.running.append("Conv2d (0) forward")
    start = time.perf_counter()
    with pytest.raises(_OutOfTime):
        with _time_limit(0.2, profile):
            while time.perf_counter() - start < 10:  # a slow first step
                pass
    assert time.perf_counter() - start < 5 and profile.running_at_alarm == ["Conv2d (0) forward"]
    with _time_limit(5, profile):  # a step within the limit is left alone
        pass


def test_environment_yml_installs_every_runtime_dependency_of_pyproject():
    import re

    import tomllib
    import yaml

    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in wanted}
    conda = {
        re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower()
        for d in yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
        if isinstance(d, str)
    }
    assert names <= conda, f"environment.yml misses {sorted(names - conda)}"
