"""Class grading benchmark: students graded per hour against the number of parallel workers.

Run from the repository root:

    python benchmarks/class_grading.py                                  # 8 students, 01-03, 1 and 2 workers
    python benchmarks/class_grading.py --students 24 --workers 1 2 4 --assignments 01_tensor 02_autograd
    python benchmarks/class_grading.py --jobs forked                   # only tito grade's default

Each run copies the course into a fresh folder, submits the reference solutions for every student
(so every submission does the same work), and times `tito grade`'s parallel grading from an empty
gradebook. Reported beside the number of cores: one submission per process with one BLAS thread
scales with cores until the machine is full, not beyond. Each worker count runs twice, with the two
ways of starting a job's process (--jobs): "forked" from a server that imported the grader once
(tito grade's default where the OS has it), and "fresh", a new interpreter per submission that imports
nbgrader again.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def course_with_class(folder, students, assignments):
    """A course copy in folder where every student submitted the reference solutions."""
    shutil.copytree(REPO / "source", folder / "source")
    shutil.copytree(REPO / "release", folder / "release")
    shutil.copy(REPO / "nbgrader_config.py", folder)
    for a in assignments:
        source = nbformat.read(str(folder / "source" / a / f"{a}.ipynb"), as_version=4)
        answers = {
            c.metadata["nbgrader"]["grade_id"]: c.source
            for c in source.cells
            if c.metadata.get("nbgrader", {}).get("solution")
        }
        nb = nbformat.read(str(folder / "release" / a / f"{a}.ipynb"), as_version=4)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("solution"):
                cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
        for i in range(students):
            target = folder / "submitted" / f"student-{i:03d}" / a
            target.mkdir(parents=True)
            nbformat.write(nb, str(target / f"{a}.ipynb"))


def main():
    from tito import class_grading
    from tito.class_grading import grade_class

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--assignments", nargs="+", default=["01_tensor", "02_autograd", "03_activations"])
    parser.add_argument("--jobs", nargs="+", choices=["forked", "fresh"], default=["forked", "fresh"])
    args = parser.parse_args()

    print(
        f"{args.students} students x {len(args.assignments)} assignments ({', '.join(args.assignments)}); "
        f"{os.cpu_count()} cores"
    )
    print(f"{'jobs':>7} {'workers':>8} {'seconds':>9} {'submissions/min':>16} {'students/hour':>14} {'speed-up':>9}")
    with tempfile.TemporaryDirectory(prefix="tinytorch-class-") as tmp:  # untimed: warms imports and disk caches
        course_with_class(Path(tmp), 1, args.assignments)
        grade_class(Path(tmp), workers=1, log=lambda *_: None)
    first = None
    for workers in args.workers:
        for jobs in args.jobs:
            class_grading.FORK_JOBS = jobs == "forked"
            with tempfile.TemporaryDirectory(prefix="tinytorch-class-") as tmp:
                root = Path(tmp)
                course_with_class(root, args.students, args.assignments)
                start = time.perf_counter()
                outcomes, _ = grade_class(root, workers=workers, log=lambda *_: None)
                seconds = time.perf_counter() - start
            assert all(o.graded and o.score == o.max_score for o in outcomes), [o for o in outcomes if not o.graded]
            first = first or seconds
            per_min = len(outcomes) / seconds * 60
            print(
                f"{jobs:>7} {workers:>8} {seconds:>9.1f} {per_min:>16.1f} {args.students / seconds * 3600:>14.0f} "
                f"{first / seconds:>8.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
