"""release/ is generated from source/ by `tito release`; it must never drift from source/."""

from pathlib import Path

from tito.release import stale_files

REPO = Path(__file__).resolve().parent.parent


def test_release_is_up_to_date_with_source():
    stale = stale_files(REPO, REPO / "release")
    assert not stale, f"release/ is stale ({', '.join(stale)}): run `tito release` and commit the result"


def test_source_assignments_hold_only_notebooks():
    # nbgrader autograde copies every other file in source/<assignment>/ over each submission:
    # a module or package there would be imported by the hidden tests instead of the student's code.
    extra = [
        str(p.relative_to(REPO))
        for p in (REPO / "source").glob("*/**/*")
        if p.is_file() and p.suffix != ".ipynb" and ".ipynb_checkpoints" not in p.parts
    ]
    assert not extra, f"only notebooks belong in source/<assignment>/: {extra}"
