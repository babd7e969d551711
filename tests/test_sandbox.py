"""A student's code in the sandbox: no network, no other folders, and each limit stops what it should."""

import os
import subprocess
import sys
import time

import pytest

from tito.sandbox import Limits, available, command

# Skipped where bubblewrap is missing, except in CI (CI set), where .ci/run installs it.
pytestmark = pytest.mark.skipif(available() is not None and not os.environ.get("CI"), reason=str(available()))


def run(tmp_path, code, limits=None, readable=()):
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    argv = command([sys.executable, "-c", code], job, readable=readable, limits=limits)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_only_loopback_network(tmp_path):
    code = (
        "import socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print('loopback ok')\n"
        "socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
    )
    proc = run(tmp_path, code)
    assert "loopback ok" in proc.stdout and "Network is unreachable" in proc.stderr, proc.stderr


def test_sees_its_own_folder_and_what_it_may_read_but_not_other_students(tmp_path):
    (tmp_path / "other-student").mkdir()
    (tmp_path / "other-student" / "answers.ipynb").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist.gz").write_text("x")
    code = (
        f"import os\nopen('out.txt', 'w').write('mine')\n"
        f"print(os.path.exists({str(tmp_path / 'other-student')!r}), open({str(tmp_path / 'data' / 'mnist.gz')!r}).read())\n"
        f"open({str(tmp_path / 'data' / 'new')!r}, 'w')\n"
    )
    proc = run(tmp_path, code, readable=[tmp_path / "data"])
    assert proc.stdout.split() == ["False", "x"], proc.stdout + proc.stderr
    assert "Read-only file system" in proc.stderr and (tmp_path / "job" / "out.txt").read_text() == "mine"


def test_fifty_gigabytes_is_a_memory_error(tmp_path):
    proc = run(tmp_path, "import numpy as np\nnp.ones(50 * 2**30 // 8)", limits=Limits(memory_mb=2048))
    assert proc.returncode != 0 and "MemoryError" in proc.stderr, proc.stderr


def test_a_fork_bomb_runs_out_of_processes(tmp_path):
    code = (
        "import os, time\nborn = 0\n"
        "try:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30); os._exit(0)\n        born += 1\n"
        "except OSError as e:\n    print(born, e.strerror)\n"
    )
    proc = run(tmp_path, code, limits=Limits(processes=20))
    born, _ = proc.stdout.split(maxsplit=1)
    assert int(born) < 20 and "Resource temporarily unavailable" in proc.stdout, proc.stdout + proc.stderr


def test_filling_the_disk_stops_at_the_file_limit(tmp_path):
    code = "f = open('big', 'wb')\nfor _ in range(400):\n    f.write(b'0' * 2**20)\n"
    proc = run(tmp_path, code, limits=Limits(file_mb=50))
    assert proc.returncode != 0 and "File too large" in proc.stderr, proc.stderr
    assert (tmp_path / "job" / "big").stat().st_size <= 50 << 20


def test_an_endless_loop_is_killed_at_the_wall_clock_limit(tmp_path):
    start = time.monotonic()
    proc = run(tmp_path, "while True:\n    pass", limits=Limits(wall_s=3))
    assert proc.returncode in (-9, 137) and time.monotonic() - start < 15, (proc.returncode, proc.stderr)  # SIGKILL


def test_a_bwrap_that_cannot_make_namespaces_is_reported_not_used(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    reason = available()
    assert reason is not None and "No permissions to create new namespace" in reason, reason
