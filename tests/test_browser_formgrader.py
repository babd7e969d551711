"""The instructor in a real browser: after `autograde` and nbgrader's feedback, formgrader (served by
JupyterLab from the course folder) shows each student's score, the hidden tests with a student's errors,
and the feedback file shows the score. Two students of 01_tensor: "ada" submits the reference solutions,
"ben" the untouched release notebook. Screenshots go to test-artifacts/screenshots/."""

import pytest
from browser import jupyterlab, screenshot
from test_autograde import course_copy, notebook, solved, submit

ASSIGNMENT = "01_tensor"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from tito.grading import autograde
    from tito.release import nbgrader_api

    root = course_copy(tmp_path_factory)
    submit(root, "ada", ASSIGNMENT, solved(root, ASSIGNMENT))
    submit(root, "ben", ASSIGNMENT, notebook(root, "release", ASSIGNMENT))
    outcomes = autograde(root, assignments=[ASSIGNMENT], students=["ada", "ben"])
    assert all(o.graded for o in outcomes), outcomes
    feedback = nbgrader_api(root).generate_feedback(ASSIGNMENT)
    assert feedback["success"], feedback["log"]
    return root


def gradebook(root):
    """{student: (score, max_score, submitted notebook id, {grade_id: score})} from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    from tito.release import nbgrader_api

    with Gradebook(nbgrader_api(root).coursedir.db_url) as gb:
        found = {s: gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, s) for s in ["ada", "ben"]}
        return {s: (nb.score, nb.max_score, nb.id, {g.name: g.score for g in nb.grades}) for s, nb in found.items()}


def cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def hidden_test(root):
    """The first test cell with hidden tests in source/: its grade id and its first hidden line."""
    for c in notebook(root, "source", ASSIGNMENT).cells:
        if "### BEGIN HIDDEN TESTS" in c.source:
            return c.metadata["nbgrader"]["grade_id"], c.source.split("### BEGIN HIDDEN TESTS\n")[1].splitlines()[0]
    raise AssertionError(f"{ASSIGNMENT} has no hidden tests")


def test_formgrader_shows_scores_hidden_tests_and_feedback(course, page):
    from playwright.sync_api import expect

    marks = gradebook(course)
    assert marks["ada"][0] == marks["ada"][1] > 0 and marks["ben"][0] == 0, marks
    grade_id, hidden_line = hidden_test(course)
    assert hidden_line not in cell(notebook(course, "release", ASSIGNMENT), grade_id).source  # hidden indeed
    [error] = [o for o in cell(notebook(course, "autograded/ben", ASSIGNMENT), grade_id).outputs if "ename" in o]
    assert marks["ben"][3][grade_id] == 0

    with jupyterlab(course) as server:
        server.login(page)

        # the gradebook of the notebook: one row per student, names shown, with the overall score
        page.goto(server.url(f"formgrader/gradebook/{ASSIGNMENT}/{ASSIGNMENT}"))
        page.wait_for_function("window.models?.loaded")  # the table is filled from formgrader's API
        page.get_by_role("button", name="Show All Names").click()
        for student, (score, top, _, _) in marks.items():
            row = page.locator("#main-table tr", has=page.get_by_role("link", name=student, exact=True))
            expect(row.locator("td.score")).to_have_text(f"{score:g} / {top:g}")  # as formgrader rounds
            expect(row.locator("td.tests-failed .glyphicon-ok")).to_have_count(int(score < top))
        screenshot(page, "formgrader-gradebook")

        # ben's submission: a test cell shows its hidden tests, and the traceback it ended with for ben
        page.goto(server.url(f"formgrader/submissions/{marks['ben'][2]}/"))
        shown = page.locator(f'[id="cell-id={grade_id}"]')  # formgrader's id of the cell's div
        expect(shown.locator(".input_area")).to_contain_text(hidden_line)
        expect(shown.locator(".output_error")).to_contain_text("Traceback")
        expect(shown.locator(".output_error")).to_contain_text(f"{error.ename}: {error.evalue}")
        screenshot(shown, "formgrader-submission-ben-hidden-test")

        # the feedback nbgrader generated, as the student will read it
        for student, (score, top, _, _) in marks.items():
            page.goto(server.url(f"files/feedback/{student}/{ASSIGNMENT}/{ASSIGNMENT}.html"))
            expect(page.get_by_role("heading", level=4).first).to_have_text(
                f"{ASSIGNMENT} (Score: {float(score)} / {float(top)})"
            )
            screenshot(page, f"feedback-{student}", full_page=False)
