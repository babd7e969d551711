"""A class graded in parallel gets the marks it gets one at a time, and a re-run grades only what changed."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_autograde import course_copy, edit_solution, notebook, solved, submit

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "gradebook,engine",
    [("sqlite", "local processes"), ("postgresql", "dask")],  # one machine; the production path of many
)
def test_tito_grade_grades_in_parallel_and_a_rerun_grades_only_changes(
    tmp_path_factory, request, monkeypatch, gradebook, engine
):
    from tito.class_grading import grade_class

    root = course_copy(tmp_path_factory)
    a = "01_tensor"
    submit(root, "ada", a, solved(root, a))
    submit(root, "ben", a, notebook(root, "release", a))
    submit(
        root, "cy", a, edit_solution(solved(root, a), "def __add__", "self.data + other.data", "self.data - other.data")
    )

    if gradebook == "postgresql":  # a real server, through the setting docs/large-class.md describes
        monkeypatch.setenv("TINYTORCH_DB_URL", request.getfixturevalue("postgres_url"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dask = ["--dask", "local"] if engine == "dask" else []
    proc = subprocess.run(
        [sys.executable, "-m", "tito", "grade", "--workers", "2", *dask],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(root / "grades.csv") as f:
        marks = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    full = marks["ada"][1]
    assert marks["ada"] == (full, full) and marks["ben"] == (0, full) and 0 < marks["cy"][0] < full, marks
    assert (root / "feedback" / "cy" / a / f"{a}.html").exists()
    assert (root / "reports" / "heatmap.png").exists() and "Where students stop" in proc.stdout, proc.stdout

    assert (root / "gradebook.db").exists() == (gradebook == "sqlite")
    assert grade_class(root, workers=2, log=lambda *_: None) == ([], 3)  # nothing changed
    submit(root, "ben", a, solved(root, a))  # ben finishes his work and submits again
    outcomes, skipped = grade_class(root, workers=2, log=lambda *_: None)
    assert [(o.student, o.score) for o in outcomes] == [("ben", full)] and skipped == 2
