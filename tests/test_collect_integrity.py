"""Dishonest submissions on their way in: collecting cannot mix students up or take in the instructor's
files, and grading never loses its sandbox silently."""

import os
import pwd
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from test_autograde import course_copy, notebook, solved
from test_class_grading import tito_grade

REPO = Path(__file__).resolve().parent.parent
A = "01_tensor"
ROOT = os.geteuid() == 0
# the pattern docs/large-class.md tells instructors to use: tested as it is written there
NAMED_REGEXP = re.search(
    r"^c\.FileNameCollectorPlugin\.named_regexp = \(?\s*(r\".*\")\s*\)?$",  # as ruff formats it, in parentheses
    (REPO / "docs" / "large-class.md").read_text(),
    flags=re.M,
)[1]


def lms_name(student, stamp, uploaded):
    """The name a Canvas-like LMS gives an upload: its own prefix, the student, the attempt, then the
    file name the student chose."""
    return f"tinytorch_{student}_attempt_{stamp}_{uploaded}"


def test_the_documented_zip_pattern_reads_the_lms_id_not_one_in_the_students_file_name():
    old = r".*_(?P<student_id>\w+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>.*)"  # the pattern it replaced
    forged = "/course/downloaded/01_tensor/extracted/export/" + lms_name(
        "mallory", "2026-11-20-10-00-00", f"x_ada_attempt_2026-11-21-00-00-00_{A}.ipynb"
    )
    assert re.match(old, forged)["student_id"] == "ada"  # how mallory replaced ada's submission
    found = re.match(eval(NAMED_REGEXP), forged)
    assert found["student_id"] == "mallory" and found["file_id"].startswith("x_ada_attempt_")


@pytest.mark.slow
def test_tito_grade_zip_collect_keeps_each_student_their_own_and_reports_what_it_skipped(tmp_path_factory):
    root = course_copy(tmp_path_factory)
    with open(root / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.FileNameCollectorPlugin.named_regexp = {NAMED_REGEXP}\n")
    (root / "downloaded" / A / "archive").mkdir(parents=True)
    blank = nbformat.writes(notebook(root, "release", A))
    with zipfile.ZipFile(root / "downloaded" / A / "archive" / "export.zip", "w") as export:
        export.writestr(lms_name("ada", "2026-11-20-10-00-00", f"{A}.ipynb"), nbformat.writes(solved(root, A)))
        # mallory names her upload so that a greedy pattern reads ada's id, with a later attempt
        export.writestr(
            lms_name("mallory", "2026-11-20-11-00-00", f"x_ada_attempt_2026-11-21-00-00-00_{A}.ipynb"), blank
        )
        export.writestr(lms_name("mallory", "2026-11-20-11-00-00", f"{A}.ipynb"), blank)
        # ben uploaded twice: the later attempt replaces the earlier one, and tito grade says so
        for stamp in ["2026-11-20-09-00-00", "2026-11-20-12-00-00"]:
            export.writestr(lms_name("ben", stamp, f"{A}.ipynb"), blank)
    proc, marks = tito_grade(root, "--collect", "zip", "--assignment", A, "--no-feedback")
    assert marks["ada"][0] == marks["ada"][1] > 0 and marks["mallory"][0] == 0 and marks["ben"][0] == 0, marks
    summary = proc.stdout.split("While collecting, nbgrader warned", 1)[-1]
    assert f"Invalid submission notebook name 'x_ada_attempt_2026-11-21-00-00-00_{A}.ipynb'" in summary, proc.stdout
    assert "Replacing previously collected submission file with one that has a newer timestamp" in summary
    assert lms_name("ben", "2026-11-20-12-00-00", f"{A}.ipynb") in summary, proc.stdout


# ------------------------------------------------------------------------------------------ the exchange
def inbound(root, student, stamp, nb, owner=None):
    """A submission as `nbgrader submit` leaves it in the exchange (or as someone writes it there by hand):
    inbound/<student>+<assignment>+<timestamp>+<random>/, owned by owner (a uid) when given."""
    folder = root / "exchange" / "tinytorch" / "inbound" / f"{student}+{A}+2026-11-20 {stamp}.000000 UTC+{stamp[:2]}x"
    folder.mkdir(parents=True)
    if isinstance(nb, Path):
        (folder / f"{A}.ipynb").symlink_to(nb)
    else:
        nbformat.write(nb, str(folder / f"{A}.ipynb"))
    (folder / "timestamp.txt").write_text(f"2026-11-20 {stamp}.000000 UTC")
    if owner is not None:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, owner, owner, follow_symlinks=False)
    return folder.name


def single_user(root):
    with open(root / "nbgrader_config.py", "a") as config:
        config.write("\nc.CheckedCollect.single_user = True\n")


@pytest.mark.slow
def test_tito_grade_refuses_an_exchange_submission_that_links_to_the_solutions(tmp_path_factory):
    root = course_copy(tmp_path_factory)
    single_user(root)  # one OS account submits for everybody: only the link is wrong here
    inbound(root, "ann", "10:00:00", solved(root, A))
    linked = inbound(root, "mallory", "10:00:00", root / "source" / A / f"{A}.ipynb")
    proc, marks = tito_grade(root, "--collect", "exchange", "--assignment", A, "--no-feedback")
    assert marks["ann"][0] == marks["ann"][1] > 0 and "mallory" not in marks, marks
    assert not (root / "submitted" / "mallory").exists()
    refusal = f"refused {linked}: {A}.ipynb is a symbolic link (to {root / 'source' / A / f'{A}.ipynb'})"
    assert refusal in proc.stdout.split("While collecting, nbgrader warned", 1)[-1], proc.stdout


@pytest.mark.skipif(not ROOT, reason="giving files to other users needs root")
def test_collecting_as_root_takes_only_what_the_named_student_owns(tmp_path_factory):
    from tito.class_grading import collect

    root = course_copy(tmp_path_factory)
    nobody, daemon = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("daemon").pw_uid
    honest, blank = solved(root, A), notebook(root, "release", A)
    inbound(root, "nobody", "09:00:00", honest, owner=nobody)  # nobody's own submission
    forged = inbound(root, "daemon", "11:00:00", blank, owner=nobody)  # nobody submits as daemon, later
    inbound(root, "daemon", "08:00:00", honest, owner=daemon)  # daemon's own, earlier
    by_root = inbound(root, "ann", "09:00:00", honest)  # root's: no student on a course run as root
    mixed = inbound(root, "bin", "09:00:00", honest, owner=pwd.getpwnam("bin").pw_uid)
    os.chown(root / "exchange" / "tinytorch" / "inbound" / mixed / f"{A}.ipynb", nobody, nobody)
    notes = collect(root, [A], "exchange")
    assert sorted(p.name for p in (root / "submitted").iterdir()) == ["daemon", "nobody"]
    for student in ["daemon", "nobody"]:  # each their own, not the forged later one
        assert notebook(root, f"submitted/{student}", A) == honest, student
    text = "\n".join(notes)
    assert f"refused {forged}: it claims to be daemon's but belongs to nobody (uid {nobody})" in text, text
    assert f"refused {by_root}: it claims to be ann's but belongs to root, and the course is not single-user" in text
    assert f"refused {mixed}: {A}.ipynb belongs to nobody (uid {nobody}), the submission to bin" in text, text


# ------------------------------------------------------------------------------------------ the sandbox
@pytest.fixture
def no_bubblewrap(tmp_path):
    """PATH with every program of /usr/bin but bwrap (and neither /bin nor /usr/bin, which hold it)."""
    hidden = tmp_path / "bin-without-bwrap"
    hidden.mkdir()
    for program in Path("/usr/bin").iterdir():
        if program.name != "bwrap":
            (hidden / program.name).symlink_to(program)
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{hidden}", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_without_bubblewrap_grading_refuses_as_root_and_says_so_otherwise(tmp_path_factory, no_bubblewrap):
    from tito.release import register_assignments

    root = course_copy(tmp_path_factory)
    register_assignments(root, [A])
    (root / "submitted" / "ann" / A).mkdir(parents=True)
    nbformat.write(solved(root, A), str(root / "submitted" / "ann" / A / f"{A}.ipynb"))

    def run(*command, **env):
        return subprocess.run(
            [sys.executable, "-m", *command], cwd=root, env={**no_bubblewrap, **env}, capture_output=True, text=True
        )

    nbgrader = run("nbgrader", "autograde", A)
    if ROOT:  # plain nbgrader, through nbgrader_config.py: refused before a kernel starts
        assert nbgrader.returncode != 0 and "refusing to grade as root without the grading sandbox" in nbgrader.stderr
        assert "bwrap is not installed" in nbgrader.stderr, nbgrader.stderr
        refused = run("tito", "grade", "--no-feedback")
        assert refused.returncode == 1 and "Not grading: refusing to grade as root" in refused.stdout, refused.stdout
        assert "tito grade --no-sandbox" in refused.stdout
        assert not list(root.glob("autograded/*/*/*.ipynb"))
    else:
        assert nbgrader.returncode == 0 and "GRADED WITHOUT THE SANDBOX" in nbgrader.stderr, nbgrader.stderr
    graded = run("tito", "grade", "--no-feedback", "--force", *(["--no-sandbox"] if ROOT else []))
    assert graded.returncode == 0, graded.stdout + graded.stderr
    summary, report = graded.stdout.split("Grades:", 1)
    warning = "GRADED WITHOUT THE SANDBOX (bwrap is not installed"
    assert warning in summary and warning in report, graded.stdout
    assert warning in (root / "reports" / "report.txt").read_text()


@pytest.mark.parametrize("root", [True, False])
def test_nbgraders_autograde_step_refuses_or_warns_without_the_sandbox(monkeypatch, caplog, root):
    import logging

    from traitlets.config import Config

    from tito import sandbox

    monkeypatch.setattr(sandbox.shutil, "which", lambda program: None if program == "bwrap" else "/usr/bin/x")
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.delenv(sandbox.ALLOW_UNSANDBOXED, raising=False)
    config = Config()
    config.GradingExecute.sandbox = sandbox.wanted()
    check = sandbox.SandboxCheck(config=config)
    check.log = logging.getLogger("test-sandbox-check")
    if root:
        with pytest.raises(sandbox.UnsandboxedGradingError, match="refusing to grade as root"):
            check({}, {})
        monkeypatch.setenv(sandbox.ALLOW_UNSANDBOXED, "1")  # what tito grade --no-sandbox passes on
    with caplog.at_level(logging.WARNING):
        check({}, {})
    assert "GRADED WITHOUT THE SANDBOX (bwrap is not installed" in caplog.text
    config.GradingExecute.sandbox = True  # configured on where it cannot start: refused for everyone
    with pytest.raises(sandbox.UnsandboxedGradingError, match="configured but cannot start"):
        check({}, {})


def test_in_the_sandbox_the_graders_environment_is_out_of_sight(tmp_path, monkeypatch):
    """The sandbox has its own pid namespace: the grader's processes are not in its /proc, and its pid 1
    (bubblewrap's) holds none of the grader's environment."""
    from tito.sandbox import available, command

    if available() is not None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(available())
    monkeypatch.setenv("TINYTORCH_DATA", "/the/graders/secret")
    probe = (
        "import os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "seen = []\n"
        "for pid in pids:\n"
        "    try:\n"
        "        seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode())\n"
        "    except OSError:\n"
        "        pass\n"
        "print(pids, 'the/graders/secret' in ''.join(seen), len(seen))\n"
    )
    tmp_path.chmod(0o777)
    proc = subprocess.run(command([sys.executable, "-c", probe], tmp_path), capture_output=True, text=True)
    assert proc.stdout.split() == ["[1,", "2]", "False", "2" if not ROOT else "1"], proc.stdout + proc.stderr


def test_nbgraders_collect_warnings_reach_the_instructor_one_line_each():
    from tito.class_grading import warnings_in

    log = (
        "[ZipCollectApp | WARNING] Directory not found. Creating: /course/submitted/ann\n"
        "[ZipCollectApp | INFO] Parsing file: /course/downloaded/x/tinytorch_ben_attempt_2_01_tensor.ipynb\n"
        "[ZipCollectApp | WARNING] Skipped submission file with older timestamp\n"
        "[WARNING] \n/inbound/ann+01_tensor+t claims to be submitted by ann but is owned by bob; cheating attempt?\n"
        "you may disable this warning by unsetting the option CollectApp.check_owner\n"
        "[INFO] Collecting submission: ann 01_tensor\n"
    )
    assert warnings_in(log) == [
        "Skipped submission file with older timestamp (tinytorch_ben_attempt_2_01_tensor.ipynb)",
        "/inbound/ann+01_tensor+t claims to be submitted by ann but is owned by bob; cheating attempt? "
        "you may disable this warning by unsetting the option CollectApp.check_owner",
    ]
