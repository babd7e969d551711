"""release/ is generated from source/ by `tito release`; it must never drift from source/."""
from pathlib import Path

from tito.release import stale_files

REPO = Path(__file__).resolve().parent.parent


def test_release_is_up_to_date_with_source():
    stale = stale_files(REPO, REPO / "release")
    assert not stale, f"release/ is stale ({', '.join(stale)}): run `tito release` and commit the result"
