"""Grading a whole class: each (student, assignment) in a process of its own, several at once.

nbgrader grades one submission after another in one process. Here every submission is a job: a
fresh `python -m tito.class_grading COURSE STUDENT ASSIGNMENT` with one BLAS thread, which runs
tito's usual autograde for that one submission and prints its outcome as JSON. Jobs go to an
executor: a local pool by default, or any `concurrent.futures` executor (Dask's, for a cluster).
Re-running grades only what changed: a graded submission keeps a fingerprint of its files.

The gradebook is written by several processes at once. SQLite serialises writers; each process
waits for the lock (nbgrader_config.py sets the gradebook's timeout) and the journal is in WAL
mode, so readers never block writers. Assignments and students are registered before the jobs
start: creating them concurrently is what races.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tito.grading import Outcome

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FINGERPRINT = ".tito-graded"  # in autograded/<student>/<assignment>/: what was graded


def fingerprint(folder):
    """sha256 over the submission's file names and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def submissions(root, assignments=None, students=None):
    """[(student, assignment, folder)] under submitted/, in course order per student."""
    from tito.report import course_order

    rank = {a: i for i, a in enumerate(course_order())}
    found = []
    for student in sorted(p for p in (Path(root) / "submitted").iterdir() if p.is_dir()):
        if students and student.name not in students:
            continue
        for sub in sorted((p for p in student.iterdir() if p.is_dir()), key=lambda p: rank.get(p.name, len(rank))):
            if not assignments or sub.name in assignments:
                found.append((student.name, sub.name, sub))
    return found


def is_graded(root, student, assignment, folder):
    marker = Path(root) / "autograded" / student / assignment / FINGERPRINT
    return marker.exists() and marker.read_text() == fingerprint(folder)


def grade_job(root, student, assignment, timeout=None):
    """Grade one submission in a new process; its Outcome (a crash of the process is an outcome too)."""
    env = {**os.environ, **ONE_THREAD}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tito.class_grading", str(root), student, assignment],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return Outcome(student, assignment, False, message=f"grading took longer than {timeout} s and was stopped")
    lines = proc.stdout.strip().splitlines()
    try:
        return Outcome(**json.loads(lines[-1]))
    except (IndexError, json.JSONDecodeError, TypeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return Outcome(student, assignment, False, message=f"the grading process failed: {' | '.join(tail)}")


def prepare_gradebook(root, work):
    """Register every assignment and student before the jobs start, and put SQLite in WAL mode."""
    from nbgrader.api import Gradebook

    from tito.release import nbgrader_api, register_assignments

    register_assignments(root, sorted({a for _, a, _ in work}))
    url = nbgrader_api(root).coursedir.db_url
    with Gradebook(url) as gb:
        for student in sorted({s for s, _, _ in work}):
            gb.update_or_create_student(student)
        if url.startswith("sqlite"):
            gb.db.execute(__import__("sqlalchemy").text("PRAGMA journal_mode=WAL"))


def grade_class(root, workers=2, assignments=None, students=None, force=False, executor=None, log=print):
    """Autograde every submission that changed since it was last graded, `workers` at a time (or on
    `executor`). Returns (outcomes, skipped): skipped were graded already and have not changed."""
    from tqdm.auto import tqdm

    root = Path(root).resolve()
    work = submissions(root, assignments, students)
    todo = [w for w in work if force or not is_graded(root, *w)]
    skipped = len(work) - len(todo)
    if skipped:
        log(f"{skipped} submission(s) graded before and unchanged: not graded again (--force grades them).")
    if not todo:
        return [], skipped
    prepare_gradebook(root, todo)
    outcomes = []
    owned = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=workers)  # threads only wait for the processes
    try:
        futures = {pool.submit(grade_job, root, s, a): (s, a, f) for s, a, f in todo}
        with tqdm(total=len(todo), unit="submission", desc="grading", dynamic_ncols=True) as bar:
            for future in as_completed(futures):
                student, assignment, folder = futures[future]
                outcome = future.result()
                outcomes.append(outcome)
                if outcome.graded:
                    marker = root / "autograded" / student / assignment / FINGERPRINT
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.write_text(fingerprint(folder))
                else:
                    bar.write(f"  not graded: {student} {assignment}: {outcome.message}")
                bar.update()
    finally:
        if owned:
            pool.shutdown()
    order = {(s, a): i for i, (s, a, _) in enumerate(todo)}
    return sorted(outcomes, key=lambda o: order[(o.student, o.assignment)]), skipped


@contextlib.contextmanager
def dask_executor(address, workers):
    """None (grade_class's own process pool) without an address; else a concurrent.futures executor on
    a Dask cluster: 'local' starts one here (workers processes, one thread each), anything else is a
    running scheduler's address. Every worker must see the course folder at the same path."""
    if not address:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # a crashed job is an outcome, not a retry
        if address == "local":
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0
            )
            with cluster, Client(cluster) as client:
                yield client.get_executor()
        else:
            with Client(address) as client:
                yield client.get_executor()


def collect(root, assignments, source):
    """Submissions into submitted/: from the nbgrader exchange, or from an LMS zip export in
    downloaded/<assignment>/archive/ (nbgrader zip_collect; docs/large-class.md has the file-name pattern)."""
    from tito.release import nbgrader_api

    if not assignments:
        raise SystemExit("Name the assignments to collect with --assignment.")
    for assignment in assignments:
        if source == "exchange":
            result = nbgrader_api(root).collect(assignment)
            if not result["success"]:
                raise SystemExit(f"nbgrader collect {assignment} failed:\n{result.get('log', '')}")
        else:
            _nbgrader(root, "zip_collect", assignment)


def generate_feedback(root, assignments):
    """nbgrader's feedback files (feedback/<student>/<assignment>/) for every graded submission."""
    from tito.release import nbgrader_api

    api = nbgrader_api(root)
    for assignment in assignments:
        api.generate_feedback(assignment)


def export_grades(root, path="grades.csv"):
    """nbgrader export: every student's score on every assignment, as CSV; returns its path."""
    _nbgrader(root, "export", f"--to={path}")
    return Path(root) / path


def _nbgrader(root, *args):
    # Without IPYTHONDIR (nbgrader_config.py sets it again): with it set to an existing folder, Jupyter
    # "migrates" it and leaves ~/.jupyter/migrated in the instructor's home.
    env = {k: v for k, v in os.environ.items() if k != "IPYTHONDIR"}
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def _job(root, student, assignment):
    """The grading process: tito's autograde for one submission; its Outcome as the last line."""
    from dataclasses import asdict

    from tito.grading import autograde

    start = time.monotonic()
    outcome = autograde(Path(root), [assignment], [student], register=False)[0]
    if outcome.graded and not outcome.message:
        outcome.message = f"{time.monotonic() - start:.0f} s"
    print(json.dumps(asdict(outcome)), flush=True)


if __name__ == "__main__":
    _job(*sys.argv[1:4])
