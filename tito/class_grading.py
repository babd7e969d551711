"""Grading a whole class: each (student, assignment) in a process of its own, several at once.

nbgrader grades one submission after another in one process. Here every submission is a job in a
process of its own, with one BLAS thread, which runs tito's usual autograde for that one submission
and hands back its outcome: a crash or a runaway is that submission's outcome and nobody else's. On
Linux and macOS the process is forked from a server that imported the grader once (Python's
"forkserver"), which saves each job the 2-3 CPU-seconds of importing nbgrader; elsewhere, and inside
a daemonic worker (which may not fork children), it is a fresh `python -m tito.class_grading COURSE
STUDENT ASSIGNMENT` that prints its outcome as JSON. Jobs go to an executor: a local pool by
default, or any `concurrent.futures` executor (Dask's, for a cluster).
Re-running grades only what changed: a graded submission keeps a fingerprint of its files.

The gradebook is written by several processes at once. SQLite serialises writers; each process
waits for the lock (nbgrader_config.py sets the gradebook's timeout) and the journal is in WAL
mode, so readers never block writers. Assignments and students are registered before the jobs
start: creating them concurrently is what races.
"""

import contextlib
import functools
import glob
import hashlib
import json
import multiprocessing
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect, groupby
from nbgrader.utils import check_mode
from traitlets import Bool

from tito.grading import Outcome

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Fork each job from a server that imported the grader once; False: a fresh interpreter per job
# (benchmarks/class_grading.py measures both).
FORK_JOBS = "forkserver" in multiprocessing.get_all_start_methods()
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
    env = {**os.environ, **ONE_THREAD}  # today's environment, whichever way the process starts
    run = _forked_job if FORK_JOBS and not multiprocessing.current_process().daemon else _fresh_job
    try:
        outcome, output = run(root, student, assignment, env, timeout)
    except subprocess.TimeoutExpired:
        return Outcome(student, assignment, False, message=f"grading took longer than {timeout} s and was stopped")
    try:
        return Outcome(**outcome)
    except TypeError:  # no outcome, or not one
        tail = output.strip().splitlines()[-3:]
        return Outcome(student, assignment, False, message=f"the grading process failed: {' | '.join(tail)}")


def _fresh_job(root, student, assignment, env, timeout):
    """(outcome dict or None, its output): a new interpreter, `python -m tito.class_grading ...`."""
    proc = subprocess.run(
        [sys.executable, "-m", "tito.class_grading", str(root), student, assignment],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]), proc.stderr or proc.stdout
    except (IndexError, json.JSONDecodeError):
        return None, proc.stderr or proc.stdout


@functools.cache
def _forkserver():
    """The forkserver context; its server imports the grader once, for every job after it."""
    os.environ.update(ONE_THREAD)  # before the server starts and imports numpy
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tito.grading"])
    return context


def _forked_job(root, student, assignment, env, timeout):
    """(outcome dict or None, its output): a process forked from the server that imported the grader."""
    context = _forkserver()
    receive, send = context.Pipe(duplex=False)
    handle, output = tempfile.mkstemp(prefix="tito-grading-")  # its output and its kernels', out of the terminal
    os.close(handle)
    proc = context.Process(target=_forked_main, args=(str(root), student, assignment, env, output, send))
    proc.start()
    send.close()  # the child holds the only writing end: its exit ends the pipe
    try:
        if not receive.poll(timeout):
            proc.kill()
            raise subprocess.TimeoutExpired(f"grading {student} {assignment}", timeout)
        return receive.recv(), ""
    except EOFError:  # it ended without an outcome
        proc.join()
        return None, Path(output).read_text(errors="replace").strip() or f"exit code {proc.exitcode}"
    finally:
        receive.close()
        proc.join()
        os.unlink(output)


def _forked_main(root, student, assignment, env, output, send):
    os.environ.clear()
    os.environ.update(env)
    with open(output, "ab", buffering=0) as out:  # as a fresh interpreter's output was captured; the kernels
        for stream in (1, 2):  # it starts inherit these descriptors
            os.dup2(out.fileno(), stream)
    send.send(_grade_one(root, student, assignment))
    send.close()


def _grade_one(root, student, assignment):
    """tito's autograde for one submission, as a dict of its Outcome."""
    from dataclasses import asdict

    from tito.grading import autograde

    start = time.monotonic()
    outcome = autograde(Path(root), [assignment], [student], register=False)[0]
    if outcome.graded and not outcome.message:
        outcome.message = f"{time.monotonic() - start:.0f} s"
    return asdict(outcome)


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
    """Submissions into submitted/: from the nbgrader exchange (through CheckedCollect, which
    nbgrader_config.py names), or from an LMS zip export in downloaded/<assignment>/archive/ (nbgrader
    zip_collect; docs/large-class.md has the file-name pattern). Returns what nbgrader warned about
    while collecting (refused, skipped and replaced submissions), one line each."""
    from tito.release import nbgrader_api

    if not assignments:
        raise SystemExit("Name the assignments to collect with --assignment.")
    notes = []
    for assignment in assignments:
        if source == "exchange":
            result = nbgrader_api(root).collect(assignment)
            if not result["success"]:
                raise SystemExit(f"nbgrader collect {assignment} failed:\n{result.get('log', '')}")
            notes += [f"{assignment}: {line}" for line in warnings_in(result.get("log") or "")]
        else:
            notes += [f"{assignment}: {line}" for line in warnings_in(_nbgrader(root, "zip_collect", assignment))]
    return notes


QUIET = ("Directory not found. Creating",)  # zip_collect making its own folders: nothing to act on
LOG_RECORD = re.compile(r"^\[(?:\w+ \| )?(?P<level>[A-Z]+)\] ?(?P<message>.*)$")


def warnings_in(log):
    """nbgrader's warnings and errors in a log, one line each (a record's continuation lines joined).
    zip_collect names the file it is reading before it warns about it: that name is added."""
    found, current, reading = [], None, None
    for line in log.splitlines():
        record = LOG_RECORD.match(line)
        if record:
            current = None
            message = record["message"].strip()
            if message.startswith("Parsing file: "):
                reading = Path(message.removeprefix("Parsing file: ")).name
            if record["level"] in ("WARNING", "ERROR", "CRITICAL") and not message.startswith(QUIET):
                if reading and ("submission file" in message or "notebook name" in message):
                    message += f" ({reading})"
                found.append(message)
                current = len(found) - 1
        elif current is not None and line.strip():
            found[current] = f"{found[current]} {line.strip()}".strip()
    return found


class CheckedCollect(ExchangeCollect):
    """nbgrader's exchange collect, refusing before anything is copied every submission in inbound/
    that another account could have made up. A submission folder is collected only when
      - it is a real folder, and nothing inside it is a symbolic link or anything but a file or folder
        (a link to source/ would be collected with the solutions in it: collecting follows links);
      - everything in it belongs to the folder's owner, and that owner is the student the folder's
        name claims (the OS user of that name), or the grader's own account: on one machine with one
        account for everybody; as root only when `single_user` says the course runs that way.
    A refused submission is logged as a warning ("refused ..."), and the student's latest acceptable
    submission is collected instead."""

    single_user = Bool(
        False,
        help="Every student submits as the same OS account (the grader's): accept submissions owned by it "
        "for any student id, also when grading as root. Ownership then proves nothing.",
    ).tag(config=True)

    def init_src(self):
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        if not check_mode(self.inbound_path, read=True, execute=True):
            self.fail(f"You don't have read permissions for the directory: {self.inbound_path}")
        if self.single_user:
            self.check_owner = False  # one account: nbgrader's owner check would warn for every student
        student = self.coursedir.student_id or "*"
        paths = glob.glob(os.path.join(self.inbound_path, f"{student}+{self.coursedir.assignment_id}+*"))
        records = []
        for path in sorted(paths):
            record = self._path_to_record(path)
            reason = self.refusal(path, record["username"])
            if reason:
                self.log.warning(f"refused {record['filename']}: {reason}")
            else:
                records.append(record)
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.duedate = None
        self.src_records = []
        for found in groupby(records, lambda r: r["username"]).values():
            found = self._sort_by_timestamp(found)
            if self.duedate is not None and self.before_duedate:
                found = [r for r in found if r["timestamp"] <= self.duedate] or found
            self.src_records.append(found[0])

    def do_copy(self, src, dest, log=None):
        """nbgrader's copy, from a private copy that took links as links: a file that became a link
        after the check above is refused, not followed."""
        if self.get_size(src) > 1000 * self.coursedir.max_dir_size:
            return super().do_copy(src, dest, log)  # nbgrader refuses it as too big
        with tempfile.TemporaryDirectory(prefix="tinytorch-collect-") as staging:
            copy = os.path.join(staging, os.path.basename(src))
            shutil.copytree(src, copy, symlinks=True)
            links = [p for p in Path(copy).rglob("*") if p.is_symlink()]
            if links:
                self.log.warning(
                    f"refused {os.path.basename(src)}: {links[0].relative_to(copy)} became a symbolic link "
                    "while it was collected"
                )
                return
            super().do_copy(copy, dest, log)

    def refusal(self, path, student):
        """Why the submission folder at path cannot be collected as student's, or None."""
        top = os.lstat(path)
        if stat.S_ISLNK(top.st_mode):
            return "it is a symbolic link"
        if not stat.S_ISDIR(top.st_mode):
            return "it is not a folder"
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                inside = os.path.join(folder, name)
                info = os.lstat(inside)
                shown = os.path.relpath(inside, path)
                if stat.S_ISLNK(info.st_mode):
                    return f"{shown} is a symbolic link (to {os.readlink(inside)})"
                if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                    return f"{shown} is not a regular file"
                if info.st_uid != top.st_uid:
                    return f"{shown} belongs to {_user(info.st_uid)}, the submission to {_user(top.st_uid)}"
        try:
            if pwd.getpwnam(student).pw_uid == top.st_uid:
                return None
        except KeyError:  # not a user of this machine
            pass
        me = os.geteuid()
        if top.st_uid == me and (me != 0 or self.single_user):
            return None  # the grader's own account: nobody else can make its files
        if top.st_uid == 0:
            return (
                f"it claims to be {student}'s but belongs to root, and the course is not single-user "
                "(c.CheckedCollect.single_user)"
            )
        return f"it claims to be {student}'s but belongs to {_user(top.st_uid)}"


def _user(uid):
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


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
    return proc.stdout + proc.stderr


def _job(root, student, assignment):
    """The grading process: tito's autograde for one submission; its Outcome as the last line."""
    print(json.dumps(_grade_one(root, student, assignment)), flush=True)


if __name__ == "__main__":
    _job(*sys.argv[1:4])
