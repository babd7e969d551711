"""The curriculum report reads a gradebook right: completion, where students stop, what predicts a
milestone's failure, and the two figures. A small class written straight into a gradebook."""

import numpy as np
import pytest

from tito.report import completion, course_order, hardest_tests, predictors, read_gradebook, report, stopping_points

MODULES = ["01_tensor", "02_autograd", "03_activations", "04_layers", "05_dense"]
TESTS = {a: [("test-a", 2.0), ("test-b", 3.0)] for a in MODULES} | {"milestone_1": [("milestone-1-mnist", 10.0)]}
# student -> assignments submitted with full marks / with test-b failed / not submitted (the rest)
CLASS = {
    "s1": (MODULES + ["milestone_1"], []),
    "s2": (MODULES + ["milestone_1"], []),
    "s3": (MODULES[:2] + MODULES[3:], ["03_activations", "milestone_1"]),  # bug in 03 and fails the milestone
    "s4": (MODULES[:2] + MODULES[3:], ["03_activations", "milestone_1"]),
    "s5": (MODULES[:3], ["04_layers"]),  # stops after 04
    "s6": ([], []),  # submitted nothing
}


@pytest.fixture
def gradebook(tmp_path):
    from nbgrader.api import Gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gb:
        for assignment, tests in TESTS.items():
            gb.add_assignment(assignment)
            gb.add_notebook(assignment, assignment)
            for name, points in tests:
                gb.add_grade_cell(name, assignment, assignment, max_score=points, cell_type="code")
        for student, (right, wrong) in CLASS.items():
            gb.add_student(student)
            for assignment in right + wrong:
                gb.add_submission(assignment, student)
                for name, points in TESTS[assignment]:
                    grade = gb.find_grade(name, assignment, assignment, student)
                    failed = assignment in wrong and name in ("test-b", "milestone-1-mnist")
                    grade.auto_score = 0.0 if failed else points
                gb.db.commit()
    return url


def test_the_report_counts_the_class_in_course_order(gradebook, tmp_path):
    grades = read_gradebook(gradebook)
    assert grades.students == sorted(CLASS)
    assert grades.assignments == MODULES + ["milestone_1"] == course_order()[:6]
    assert completion(grades) == [
        ("01_tensor", 5, 5),
        ("02_autograd", 5, 5),
        ("03_activations", 5, 3),
        ("04_layers", 5, 4),
        ("05_dense", 4, 4),
        ("milestone_1", 4, 2),
    ]
    assert stopping_points(grades) == {"finished": 2, "03_activations": 2, "04_layers": 1, "01_tensor": 1}
    assert hardest_tests(grades)[:3] == [
        ("03_activations/test-b", 2, 5),
        ("milestone_1/milestone-1-mnist", 2, 4),
        ("04_layers/test-b", 1, 5),
    ]
    module, fail_if_incomplete, fail_if_complete, incomplete = predictors(grades)["milestone_1"][0]
    assert (module, fail_if_incomplete, fail_if_complete, incomplete) == ("03_activations", 1.0, 0.0, 2)

    lines = report(gradebook, tmp_path / "figures")
    text = "\n".join(lines)
    assert "milestone_1               4      2  33%" in text, text
    assert "03_activations    100% vs    0%   (2 students incomplete)" in text, text
    for name in ["heatmap.png", "funnel.png"]:
        from PIL import Image

        image = np.asarray(Image.open(tmp_path / "figures" / name).convert("RGB"))
        assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 20  # drawn, not blank
