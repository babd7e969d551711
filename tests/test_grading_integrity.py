"""A module's points are decided where a student's own cells cannot reach: graded for real, with
`tito grade` as an instructor runs it (the sandbox on where bubblewrap is installed; CI installs it).

Each trickster submits the untouched release (or the reference solutions with one bug) plus one
trick that used to buy full marks; "ada" submits the reference solutions and must keep full marks.
"""

import json

import nbformat
import pytest
from test_autograde import RELU_GRADIENT, course_copy, edit_solution, notebook, solved, submit
from test_class_grading import tito_grade

SWALLOW_ERRORS = """\
import ast
class Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        return ast.fix_missing_locations(ast.Module([ast.Try(node.body, [handler], [], [])], []))
get_ipython().ast_transformers.append(Swallow())
"""
SWALLOW_LINES = """\
def swallow(lines):
    return ["try:\\n"] + ["    " + line for line in lines] + ["\\nexcept BaseException:\\n    pass\\n"]
get_ipython().input_transformers_post.append(swallow)
"""
PATCH_CHECKERS = """\
import numpy as np, numpy.testing, tito.checks
np.allclose = lambda *args, **kwargs: True
tito.checks.assert_close = tito.checks.gradcheck = lambda *args, **kwargs: None
numpy.testing.assert_allclose = lambda *args, **kwargs: None
"""
# the same patch from inside a solution cell: read before it runs, and (with the reading blinded, as
# for a route it does not know) seen by the fingerprint after the cell
IN_SOLUTION = "\nimport tito.checks\ntito.checks.gradcheck = tito.checks.assert_close = lambda *a, **k: None\n"
HIDDEN_IN_SOLUTION = "\nsetattr(*(np, 'allclose', lambda *a, **k: True))\n"
# numpy alone can read a file: what a solution cell could print if the kernel could see source/
LEAK = """
try:
    print(np.fromfile({path!r}, dtype=np.uint8).tobytes().decode())
except OSError as err:
    print("cannot read it:", err)
"""


def add_cell(nb, code, after="setup"):
    index = next(i for i, c in enumerate(nb.cells) if c.get("id") == after or _gid(c) == after)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def append_to_solution(nb, grade_id, code):
    cell = next(c for c in nb.cells if _gid(c) == grade_id)
    cell.source += code
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from nbgrader.api import Gradebook

    from tito.grading import Outcome
    from tito.release import nbgrader_api

    root = course_copy(tmp_path_factory)
    release = {a: notebook(root, "release", a) for a in ["01_tensor", "03_activations"]}
    submissions = {
        ("ada", "03_activations"): solved(root, "03_activations"),
        ("ast-hook", "01_tensor"): add_cell(release["01_tensor"], SWALLOW_ERRORS),
        ("ast-hook", "03_activations"): add_cell(release["03_activations"], SWALLOW_ERRORS),
        ("line-hook", "03_activations"): add_cell(notebook(root, "release", "03_activations"), SWALLOW_LINES),
        ("patch-cell", "03_activations"): add_cell(
            edit_solution(solved(root, "03_activations"), *RELU_GRADIENT), PATCH_CHECKERS, after="relu-backward"
        ),
        ("patch-solution", "03_activations"): append_to_solution(
            edit_solution(solved(root, "03_activations"), *RELU_GRADIENT), "relu-backward", IN_SOLUTION
        ),
        ("edit-course-cell", "03_activations"): solved(root, "03_activations"),
        ("cy", "03_activations"): edit_solution(solved(root, "03_activations"), *RELU_GRADIENT),
        ("leak", "03_activations"): append_to_solution(
            solved(root, "03_activations"),
            "relu-forward",
            LEAK.format(path=str(root / "source" / "01_tensor" / "01_tensor.ipynb")),
        ),
    }
    course_cell = next(c for c in submissions[("edit-course-cell", "03_activations")].cells if c.get("id") == "cell-3")
    course_cell.source = PATCH_CHECKERS  # a course cell (no nbgrader metadata), rewritten
    edit_solution(submissions[("edit-course-cell", "03_activations")], *RELU_GRADIENT)
    for (student, assignment), nb in submissions.items():
        submit(root, student, assignment, nb)
    proc, _ = tito_grade(root, "--no-feedback")
    with Gradebook(nbgrader_api(root).coursedir.db_url) as gb:
        outcomes = {}
        for student, assignment in submissions:
            s = gb.find_submission(assignment, student)
            outcomes[student, assignment] = Outcome(student, assignment, True, s.score, s.max_score)
    return root, outcomes, proc.stdout


def lost_tests(root, student, assignment):
    from test_autograde import cell_scores

    return {name for name, (score, top) in cell_scores(root, student, assignment).items() if score < top}


def test_reference_solutions_keep_full_marks(graded):
    _, outcomes, _ = graded
    o = outcomes[("ada", "03_activations")]
    assert o.graded and o.score == o.max_score > 0, o


@pytest.mark.parametrize("student", ["ast-hook", "line-hook"])
def test_an_ipython_hook_in_an_added_cell_buys_nothing(graded, student):
    root, outcomes, _ = graded
    for (who, assignment), o in outcomes.items():
        if who == student:
            assert o.graded and o.score == 0, o
            text = json.dumps(notebook(root, f"autograded/{student}", assignment).cells)
            assert "Not run when graded: a cell you added" in text


@pytest.mark.parametrize("student", ["patch-cell", "edit-course-cell"])
def test_checkers_patched_outside_the_solution_cells_change_nothing(graded, student):
    root, _, _ = graded
    assert lost_tests(root, "cy", "03_activations")  # the bug alone, no trick
    assert lost_tests(root, student, "03_activations") == lost_tests(root, "cy", "03_activations")


def test_checkers_patched_inside_a_solution_cell_are_flagged_and_buy_nothing(graded):
    root, outcomes, _ = graded
    assert_flagged(root, "patch-solution", "imports tito")
    o = outcomes[("patch-solution", "03_activations")]
    assert o.score < o.max_score


def test_a_patch_the_reading_misses_is_seen_by_the_fingerprint(graded, monkeypatch):
    from tito.grading import autograde

    root, _, _ = graded
    monkeypatch.setattr("tito.integrity.scan", lambda *args, **kwargs: [])  # a route the reading does not know
    nb = append_to_solution(
        edit_solution(solved(root, "03_activations"), *RELU_GRADIENT), "relu-backward", HIDDEN_IN_SOLUTION
    )
    submit(root, "patch-hidden", "03_activations", nb)
    (o,) = autograde(root, students=["patch-hidden"], register=False)
    assert o.graded and o.score < o.max_score, o
    assert_flagged(root, "patch-hidden", "changed numpy.allclose")
    text = json.dumps(notebook(root, "autograded/patch-hidden", "03_activations").cells)
    assert "later tests are not counted" in text


def assert_flagged(root, student, reason):
    lost = lost_tests(root, student, "03_activations")
    assert "test-relu-grad" in lost, lost
    flags = notebook(root, f"autograded/{student}", "03_activations").metadata["tito"]["integrity"]
    assert flags and flags[0]["cell"] == "relu-backward" and reason in json.dumps(flags), flags


def test_a_grading_kernel_sees_no_instructor_notebook(graded):
    root, outcomes, _ = graded
    text = json.dumps(notebook(root, "autograded/leak", "03_activations").cells)
    assert "cannot read it: [Errno 2] No such file" in text and "nbformat" not in text
    o = outcomes[("leak", "03_activations")]
    assert o.score == o.max_score, o


def test_tito_grade_lists_the_flagged_submissions_for_the_instructor(graded):
    _, _, printed = graded
    flagged = printed.split("⚑ Flagged for review")[1]
    assert "patch-solution" in flagged and "relu-backward" in flagged and "imports tito" in flagged
    assert "ada " not in flagged and "cy " not in flagged
