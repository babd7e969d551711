"""A class graded in parallel gets the marks it gets one at a time, and a re-run grades only what changed."""

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_autograde import course_copy, edit_solution, notebook, solved, submit

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def tito_grade(root, *args):
    """`tito grade ARGS` run in the course root as an instructor would: (the process, {student: (score, max)}
    from grades.csv)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tito", "grade", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(root / "grades.csv") as f:
        return proc, {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}


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
    proc, marks = tito_grade(root, "--workers", "2", *(["--dask", "local"] if engine == "dask" else []))
    full = marks["ada"][1]
    assert marks["ada"] == (full, full) and marks["ben"] == (0, full) and 0 < marks["cy"][0] < full, marks
    assert (root / "feedback" / "cy" / a / f"{a}.html").exists()
    assert (root / "reports" / "heatmap.png").exists() and "Where students stop" in proc.stdout, proc.stdout

    assert (root / "gradebook.db").exists() == (gradebook == "sqlite")
    assert grade_class(root, workers=2, log=lambda *_: None) == ([], 3)  # nothing changed
    submit(root, "ben", a, solved(root, a))  # ben finishes his work and submits again
    outcomes, skipped = grade_class(root, workers=2, log=lambda *_: None)
    assert [(o.student, o.score) for o in outcomes] == [("ben", full)] and skipped == 2


# What one grading process writes to the gradebook (as nbgrader's autograde does), all starting at once.
WRITER = """
import sys, time
from nbgrader.api import Gradebook
url, student, assignment, start = sys.argv[1:5]
time.sleep(max(0.0, float(start) - time.time()))
with Gradebook(url) as gb:
    gb.update_or_create_student(student)
    gb.update_or_create_submission(assignment, student)
    for grade in gb.find_submission_notebook(assignment, assignment, student).grades:
        grade.auto_score = grade.max_score
    gb.db.commit()
"""


def test_the_gradebook_stays_right_under_concurrent_writers(tmp_path_factory):
    from nbgrader.api import Gradebook

    from tito.class_grading import prepare_gradebook
    from tito.release import nbgrader_api

    root = course_copy(tmp_path_factory)
    work = [(f"s{i}", a, None) for i in range(4) for a in ["01_tensor", "02_autograd", "03_activations"]]
    prepare_gradebook(root, work)
    url = nbgrader_api(root).coursedir.db_url
    start = str(time.time() + 5)  # 12 writers, each the same student's three at the same moment
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, s, a, start], stderr=subprocess.PIPE, text=True)
        for s, a, _ in work
    ]
    errors = [w.communicate(timeout=300)[1] for w in writers]
    assert [w.returncode for w in writers] == [0] * len(work), errors
    with Gradebook(url) as gb:
        scores = {(s, a): (gb.find_submission(a, s).score, gb.find_submission(a, s).max_score) for s, a, _ in work}
    assert all(score == full > 0 for score, full in scores.values()), scores


# Code at the end of a student's solution cell that runs away, and what the grader says when it stops it
# (a regex). A fork bomb needs `import os`, which no solution cell may do: that cell is not run at all
# (the sandbox's process limit still guards the milestone judge, which runs the student's modules).
RUNAWAYS = {
    "hog": ("big = np.ones(50 * 2**30 // 8)  # 50 GB", "Unable to allocate 50.0 GiB"),
    "forker": (
        "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)",
        "IntegrityError.*imports os",
    ),
    "filler": (
        "for i in range(100):\n    with open(f'part-{i}', 'wb') as f:\n        f.write(bytes(100 * 2**20))",
        "No space left on device",
    ),
    "big-file": ("with open('one-file', 'wb') as f:\n    f.write(bytes(300 * 2**20))", "File too large"),
    "looper": ("while True:\n    pass", "KeyboardInterrupt|CellTimeoutError"),
}
LAST_SOLUTION = "creators"  # 01_tensor's last solution cell: its functions are defined before the runaway starts


def test_a_runaway_is_stopped_with_its_reason_and_no_other_grade_changes(tmp_path_factory, monkeypatch):
    from tito.class_grading import grade_class
    from tito.sandbox import available

    if available() is not None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(available())
    monkeypatch.setenv("TINYTORCH_CELL_TIMEOUT", "10")
    root = course_copy(tmp_path_factory)
    a = "01_tensor"
    submit(root, "ada", a, solved(root, a))
    for student, (code, _) in RUNAWAYS.items():
        nb = solved(root, a)
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == LAST_SOLUTION)
        cell.source += "\n" + code
        submit(root, student, a, nb)
    outcomes, _ = grade_class(root, workers=2, log=lambda *_: None)
    marks = {o.student: (o.score, o.max_score) for o in outcomes}
    full = marks["ada"][1]
    honest = ["ada", *(s for s in RUNAWAYS if s != "forker")]
    assert {s: marks[s] for s in honest} == {s: (full, full) for s in honest}, marks  # the rest of each runs on
    assert marks["forker"][0] < full  # its cell was not run
    for student, (code, reason) in RUNAWAYS.items():
        cell = next(c for c in notebook(root, f"autograded/{student}", a).cells if code in c.source)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors and re.search(reason, str(errors[0])), (student, cell.outputs)
