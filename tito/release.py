"""Instructor side: make release/ from source/ with nbgrader, and tell when it is stale."""
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat


def nbgrader_api(root):
    """An in-process NbGraderAPI for the course at root (saves nbgrader's start-up per command)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    return NbGraderAPI(config=config)


def assignments(root):
    return sorted(p.name for p in (Path(root) / "source").iterdir()
                  if p.is_dir() and not p.name.startswith("."))


def generate_release(root, dest):
    """Run nbgrader generate_assignment for every assignment in a scratch copy, then copy to dest."""
    root, dest = Path(root), Path(dest)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        shutil.copytree(root / "source", scratch / "source")
        shutil.copy(root / "nbgrader_config.py", scratch)
        api = nbgrader_api(scratch)
        for a in assignments(scratch):
            result = api.generate_assignment(a, force=True, create=True)
            if not result["success"]:
                print(result["log"], file=sys.stderr)
                raise SystemExit(f"nbgrader generate_assignment {a} failed (log above)")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(scratch / "release", dest)
    print(f"release/ regenerated from source/ ({len(assignments(root))} assignments) in {dest}")
    return 0


def stale_files(root, released):
    """Files that differ between a fresh release of root and the released folder."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "release"
        generate_release(root, fresh)
        cmp = filecmp.dircmp(fresh, released)
        return _differences(cmp)


def _differences(cmp, prefix=""):
    out = [prefix + n for n in cmp.left_only + cmp.right_only + cmp.diff_files + cmp.funny_files]
    for name, sub in cmp.subdirs.items():
        out += _differences(sub, f"{prefix}{name}/")
    return out


def notebook_code(path):
    return "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells)
