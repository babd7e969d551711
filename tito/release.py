"""Instructor side: make release/ from source/ with nbgrader, and tell when it is stale."""

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat


def nbgrader_api(root, gradebook_of=None):
    """An in-process NbGraderAPI for the course at root (saves nbgrader's start-up per command).

    gradebook_of: use that course's gradebook instead of root's (for scratch copies of a course).
    """
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    if gradebook_of is not None:
        config.CourseDirectory.db_url = nbgrader_api(gradebook_of).coursedir.db_url
    return NbGraderAPI(config=config)


def assignments(root):
    return sorted(p.name for p in (Path(root) / "source").iterdir() if p.is_dir() and not p.name.startswith("."))


def _generate(root, scratch, names, register):
    """nbgrader generate_assignment in a scratch copy of root (root's own files stay untouched);
    with register, the assignments and their graded cells go into root's gradebook."""
    shutil.copytree(Path(root) / "source", scratch / "source")
    shutil.copy(Path(root) / "nbgrader_config.py", scratch)
    api = nbgrader_api(scratch, gradebook_of=root if register else None)
    for a in names:
        result = api.generate_assignment(a, force=True, create=True)
        if not result["success"]:
            print(result["log"], file=sys.stderr)
            raise SystemExit(f"nbgrader generate_assignment {a} failed (log above)")


def register_assignments(root, names):
    """Put the assignments (from source/) into the course's gradebook, as autograde needs."""
    with tempfile.TemporaryDirectory() as scratch:
        _generate(root, Path(scratch), names, register=True)


def generate_release(root, dest, register=True):
    """Generate every assignment's student version into dest (and register them in the gradebook)."""
    root, dest = Path(root), Path(dest)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        _generate(root, scratch, assignments(root), register)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(scratch / "release", dest)
    print(
        f"release/ regenerated from source/ ({len(assignments(root))} assignments) in {dest}"
        + (", and registered in the gradebook" if register else "")
    )
    return 0


def stale_files(root, released):
    """Files that differ between a fresh release of root and the released folder."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "release"
        generate_release(root, fresh, register=False)
        cmp = filecmp.dircmp(fresh, released)
        return _differences(cmp)


def _differences(cmp, prefix=""):
    out = [prefix + n for n in cmp.left_only + cmp.right_only + cmp.diff_files + cmp.funny_files]
    for name, sub in cmp.subdirs.items():
        out += _differences(sub, f"{prefix}{name}/")
    return out


def notebook_code(path):
    return "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells)
