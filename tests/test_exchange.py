"""The whole nbgrader cycle as the README tells it, run in a plain shell (no venv activated, an empty
HOME per person): release -> two students fetch, work and submit -> collect -> autograde ->
feedback -> the students fetch their feedback. Nothing of the course writes into anyone's home."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ASSIGNMENT = "01_tensor"


def run(who, cwd, home, exchange, *command):
    """A command as a person runs it from a plain shell: minimal PATH, their own empty HOME."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "USER": who,
        "LANG": "C.UTF-8",
        "TINYTORCH_EXCHANGE": str(exchange),
        "TINYTORCH_DATA": os.environ.get("TINYTORCH_DATA", ""),
    }
    proc = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def solve(path):
    """Fill the solution cells of a fetched notebook from source/ (a student who did everything)."""
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    nbformat.write(nb, str(path))


@pytest.mark.slow
@pytest.mark.parametrize("grader", ["nbgrader", "tito grade"])  # nbgrader's own commands, or tito's in one
def test_release_fetch_submit_collect_autograde_feedback(tmp_path, grader):
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    for name in ["source", "release"]:
        shutil.copytree(REPO / name, course / name)
    shutil.copy(REPO / "nbgrader_config.py", course)
    with open(course / "nbgrader_config.py", "a") as config:  # everybody is this one OS user (also as root)
        config.write("\nc.CheckedCollect.single_user = True\n")
    exchange.mkdir()
    homes = {who: tmp_path / "home" / who for who in ["teacher", "ann", "bob"]}
    for home in homes.values():
        home.mkdir(parents=True)
    flags = ["--course", "tinytorch", f"--Exchange.root={exchange}"]  # what a student's config would hold

    def teacher(*command):
        return run("teacher", course, homes["teacher"], exchange, *command)

    teacher("tito", "release", "--course", ".")
    teacher("nbgrader", "release_assignment", ASSIGNMENT)
    for who in ["ann", "bob"]:
        folder = tmp_path / who
        folder.mkdir()
        run(who, folder, homes[who], exchange, "nbgrader", "fetch_assignment", ASSIGNMENT, *flags)
        if who == "ann":
            solve(folder / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        # one machine, one OS user: --student names who submits (on JupyterHub it is the login)
        run(who, folder, homes[who], exchange, "nbgrader", "submit", ASSIGNMENT, *flags, f"--student={who}")

    if grader == "nbgrader":
        teacher("nbgrader", "collect", ASSIGNMENT)
        teacher("nbgrader", "autograde", ASSIGNMENT)
        teacher("nbgrader", "generate_feedback", ASSIGNMENT)
    else:
        teacher("tito", "grade", "--collect", "exchange", "--assignment", ASSIGNMENT)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["ann", "bob"]
    teacher("nbgrader", "release_feedback", ASSIGNMENT)

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {who: gb.find_submission(ASSIGNMENT, who) for who in ["ann", "bob"]}
        assert scores["ann"].score == scores["ann"].max_score > 0
        assert scores["bob"].score == 0
    for who in ["ann", "bob"]:
        run(
            who,
            tmp_path / who,
            homes[who],
            exchange,
            "nbgrader",
            "fetch_feedback",
            ASSIGNMENT,
            *flags,
            f"--student={who}",
        )
        feedback = list((tmp_path / who / ASSIGNMENT / "feedback").glob("*/01_tensor.html"))
        assert len(feedback) == 1, f"{who} got no feedback"
        assert "Score" in feedback[0].read_text()
    # nbgrader's own submission cache (Exchange.cache) is the only thing a student's home may hold
    assert not list(homes["teacher"].iterdir()), list(homes["teacher"].rglob("*"))
    for who in ["ann", "bob"]:
        written = {p.relative_to(homes[who]).parts[:4] for p in homes[who].rglob("*") if p.is_file()}
        assert written == {(".local", "share", "jupyter", "nbgrader_cache")}, written
