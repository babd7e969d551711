"""A class graded in parallel gets the marks it gets one at a time, and a re-run grades only what changed."""

import pytest
from test_autograde import course_copy, edit_solution, notebook, solved, submit

pytestmark = pytest.mark.slow


def test_parallel_grading_gives_each_student_their_marks_and_regrades_only_changes(tmp_path_factory):
    from tito.class_grading import grade_class

    root = course_copy(tmp_path_factory)
    a = "01_tensor"
    submit(root, "ada", a, solved(root, a))
    submit(root, "ben", a, notebook(root, "release", a))
    submit(
        root, "cy", a, edit_solution(solved(root, a), "def __add__", "self.data + other.data", "self.data - other.data")
    )

    outcomes, skipped = grade_class(root, workers=2, log=lambda *_: None)
    marks = {o.student: (o.score, o.max_score) for o in outcomes}
    assert skipped == 0 and all(o.graded for o in outcomes), outcomes
    full = marks["ada"][1]
    assert marks["ada"] == (full, full) and marks["ben"] == (0, full) and 0 < marks["cy"][0] < full, marks

    outcomes, skipped = grade_class(root, workers=2, log=lambda *_: None)
    assert (outcomes, skipped) == ([], 3)

    submit(root, "ben", a, solved(root, a))  # ben finishes his work and submits again
    outcomes, skipped = grade_class(root, workers=2, log=lambda *_: None)
    assert [(o.student, o.score) for o in outcomes] == [("ben", full)] and skipped == 2
