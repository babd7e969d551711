"""nbgrader for real: generate the assignments, autograde four students, and check every mark.

- "ada" submits the reference solutions: full marks everywhere, Milestone 1 achieved with her package.
- "ben" submits the untouched release notebooks: zero everywhere, and nothing crashes.
- "cy" has one bug, a wrong ReLU gradient: loses exactly the ReLU-gradient tests, and Milestone 1.
- "dee" has a syntax error in 02, a kernel-crashing relu in 03 (a segfault), an infinite loop in 04 and a
  corrupted 05 notebook: the rest is graded, each problem is reported, and her milestone fails with a
  message naming the syntax error.
- "trick-*" students submit honest modules but a model that cannot reach 85% (one hidden unit),
  plus one trick each to fool the milestone judge from their notebook: all of them score zero.
- "model-*" students make their build_model cell itself dishonest (tests/test_milestone_integrity.py
  has the same tricks, judged directly): a class answering from the pasted test labels, a model
  fitted in build_model, a failure message turned into a link to a file only the grader may read.
  Each scores zero with the reason, and the file is not read.
Modules 06–11 and Milestone 2 (slow: Milestone 2 trains a CNN on CIFAR-10 for each student):
- "ada" full marks, Milestone 2 achieved; "ben" (untouched release) zero without crashing;
- "cy" has one bug in 06, a conv weight gradient with swapped axes: loses exactly the tests that the
  same bug fails in tests/wrong_variants/06_spatial.yml, nothing in 07–11, and Milestone 2.
Modules 12–16 and Milestone 3 (slow: Milestone 3 trains a GPT for the reference student):
- "ada" full marks, Milestone 3 achieved; "ben" (untouched release) zero without crashing;
- "cy" has one bug in 14, a causal mask that lets position t see t + 1: loses exactly the tests that
  the same bug fails in tests/wrong_variants/14_attention.yml, nothing in 12, 13, 15, 16, and
  Milestone 3 (the judge finds the leak before training).
The course is a fresh copy with no gradebook: `autograde` registers the assignments itself.
"""

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from tito.course import MODULES

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENTS = MODULES[:5] + ["milestone_1"]


def notebook(root, step, assignment):
    return nbformat.read(str(root / step / assignment / f"{assignment}.ipynb"), as_version=4)


def solved(root, assignment):
    """The release notebook with every solution cell filled in from source/ (a perfect student)."""
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in notebook(root, "source", assignment).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = notebook(root, "release", assignment)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    return nb


def edit_solution(nb, marker, old, new):
    """Change one solution cell (found by marker) the way a student's bug would."""
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and marker in c.source]
    assert len(cells) == 1 and old in cells[0].source, f"cannot find {old!r} in the cell with {marker!r}"
    cells[0].source = cells[0].source.replace(old, new, 1)
    return nb


def submit(root, student, assignment, nb):
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment}.ipynb"
    if isinstance(nb, str):
        path.write_text(nb)
    else:
        nbformat.write(nb, str(path))


RELU_GRADIENT = ('@gradient("relu")', "> 0", "< 0")
INFINITE_LOOP = (
    "class Linear",
    "    def forward(self, x):\n",
    "    def forward(self, x):\n        while True:\n            pass\n",
)
# a window past the end of memory: a segfault, from code that reaches for nothing it should not
KERNEL_CRASH = (
    "def relu(",
    "    x = as_tensor(x)\n",
    "    x = as_tensor(x)\n    np.lib.stride_tricks.as_strided(np.zeros(1), (1 << 20,), (1 << 40,)).sum()\n",
)
SYNTAX_ERROR = ("def unbroadcast", "### BEGIN SOLUTION\n", "### BEGIN SOLUTION\n    if grad.ndim >\n")


BAD_MODEL = ("def build_model", "return MLP([784, 256, 128, 10])", "return MLP([784, 1, 10])")
TRICKS = {  # a cell each, run in the student's kernel after build_model is defined
    "trick-judge-state": "import milestones.foundation.test_lenet_milestone as j, milestones.judge as core\n"
    "j.THRESHOLD = 0.0\nj.CONFIG['threshold'] = 0.0\n"
    "core.MilestoneFailure = type('Ignored', (Exception,), {})",
    "trick-patch-numpy": "import numpy\nnumpy.mean = lambda *args, **kwargs: 1.0\nnumpy.ndarray.argmax = None",
    "trick-swap-module": "import sys, types\nfake = types.ModuleType('milestones.foundation.test_lenet_milestone')\n"
    "fake.check = lambda build_model: print('MILESTONE 1 ACHIEVED')\n"
    "sys.modules[fake.__name__] = fake",
    "trick-shadow-file": "print('ships milestones/ beside the notebook')",
}
SHADOW = {
    "milestones/__init__.py": "",
    "milestones/foundation/__init__.py": "",
    "milestones/foundation/test_lenet_milestone.py": "def check(build_model):\n    print('passed')\n",
}


MODEL_TRICKS = {  # students whose build_model cell is the trick (model_trick), and what the judge says
    "model-pasted-labels": "an instance of Answers, a layer class defined in the build_model cell",
    "model-fitted": "build_model must return an untrained model",
    "model-leaks-a-file": "left failure.txt as something other than a regular file",
}
SECRET = "only the grader may read this"


def model_trick(root, student):
    from test_milestone_integrity import ANSWERS_CLASS, LEAK, RIDGE, mnist_test_labels

    return {
        "model-pasted-labels": lambda: ANSWERS_CLASS.replace("{labels}", mnist_test_labels()),
        "model-fitted": lambda: RIDGE,
        "model-leaks-a-file": lambda: LEAK.replace("{secret!r}", repr(str(root / "instructor-only.txt"))),
    }[student]()


def add_trick(nb, code):
    """Insert a student's cell right after the build_model cell."""
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "build-model")
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def course_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO / "source", root / "source")
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "release", root / "release")
    return root


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from tito.grading import autograde

    root = course_copy(tmp_path_factory)
    os.environ["TINYTORCH_CELL_TIMEOUT"] = "10"  # keeps dee's infinite loop short

    for a in ASSIGNMENTS:
        submit(root, "ada", a, solved(root, a))
        submit(root, "ben", a, notebook(root, "release", a))
        cy = solved(root, a)
        dee = solved(root, a)
        if a == "03_activations":
            edit_solution(cy, *RELU_GRADIENT)
        if a == "02_autograd":
            edit_solution(dee, *SYNTAX_ERROR)
        if a == "03_activations":
            edit_solution(dee, *KERNEL_CRASH)
        if a == "04_layers":
            edit_solution(dee, *INFINITE_LOOP)
        submit(root, "cy", a, cy)
        submit(root, "dee", a, '{"cells": [{"cell_type": "code", "sour' if a == "05_dense" else dee)
        for trickster, code in TRICKS.items():
            nb = solved(root, a)
            if a == "milestone_1":
                add_trick(edit_solution(nb, *BAD_MODEL), code)
            submit(root, trickster, a, nb)
    (root / "instructor-only.txt").write_text(SECRET)
    (root / "instructor-only.txt").chmod(0o600)
    for student in MODEL_TRICKS:  # honest modules, a dishonest build_model cell
        for a in ASSIGNMENTS:
            nb = solved(root, a)
            if a == "milestone_1":
                cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "build-model")
                cell.source = model_trick(root, student)
            submit(root, student, a, nb)
    for name, text in SHADOW.items():
        (root / "submitted" / "trick-shadow-file" / "milestone_1" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submitted" / "trick-shadow-file" / "milestone_1" / name).write_text(text)
    outcomes = autograde(root, students=["ada", "ben", "cy", "dee"])
    outcomes += autograde(root, assignments=["milestone_1"], students=[*TRICKS, *MODEL_TRICKS])
    return root, {(o.student, o.assignment): o for o in outcomes}


# With pytest-xdist, the tests that share a graded course run on one worker, which grades it once.
foundation = pytest.mark.xdist_group("autograde-foundation")
revolution = pytest.mark.xdist_group("autograde-revolution")
generation = pytest.mark.xdist_group("autograde-generation")


def cell_scores(root, student, assignment):
    from nbgrader.api import Gradebook

    from tito.release import nbgrader_api

    with Gradebook(nbgrader_api(root).coursedir.db_url) as gb:
        nb = gb.find_submission_notebook(assignment, assignment, student)
        return {g.name: (g.score, g.max_score) for g in nb.grades}


@foundation
def test_reference_solutions_get_full_marks(graded):
    root, outcomes = graded
    for a in ASSIGNMENTS:
        o = outcomes[("ada", a)]
        assert o.graded and o.max_score > 0 and o.score == o.max_score, (a, o)


@foundation
def test_untouched_release_scores_zero_without_crashing(graded):
    _, outcomes = graded
    for a in ASSIGNMENTS:
        o = outcomes[("ben", a)]
        assert o.graded and o.score == 0, (a, o)


@foundation
def test_wrong_relu_gradient_costs_exactly_the_relu_gradient_tests_and_the_milestone(graded):
    root, outcomes = graded
    lost = {name for name, (score, top) in cell_scores(root, "cy", "03_activations").items() if score < top}
    assert lost and all("relu" in name and "grad" in name for name in lost), lost
    for a in ["01_tensor", "02_autograd", "04_layers", "05_dense"]:
        assert outcomes[("cy", a)].score == outcomes[("cy", a)].max_score, a
    assert outcomes[("cy", "milestone_1")].graded and outcomes[("cy", "milestone_1")].score == 0
    judged = json.dumps(notebook(root, "autograded/cy", "milestone_1").cells)  # the diagnosis names the module
    assert "Look at your 03_activations: it keeps the model from learning." in judged, judged


@foundation
def test_bad_submissions_are_reported_and_the_rest_is_graded(graded):
    root, outcomes = graded
    assert outcomes[("dee", "01_tensor")].score == outcomes[("dee", "01_tensor")].max_score
    crashed = outcomes[("dee", "03_activations")]
    assert crashed.graded and crashed.score < crashed.max_score
    assert "KernelCrashed" in json.dumps(notebook(root, "autograded/dee", "03_activations").cells)
    assert 0 < outcomes[("dee", "02_autograd")].score < outcomes[("dee", "02_autograd")].max_score
    assert outcomes[("dee", "04_layers")].score < outcomes[("dee", "04_layers")].max_score
    timed_out = json.dumps(notebook(root, "autograded/dee", "04_layers").cells)
    assert "CellTimeoutError" in timed_out or "KeyboardInterrupt" in timed_out
    assert not outcomes[("dee", "05_dense")].graded
    assert "05_dense.ipynb is not a readable notebook" in outcomes[("dee", "05_dense")].message
    milestone = json.dumps(notebook(root, "autograded/dee", "milestone_1").cells)
    assert outcomes[("dee", "milestone_1")].score == 0
    assert "SyntaxError in 02_autograd.ipynb" in milestone


@pytest.mark.parametrize("trickster", TRICKS)
@foundation
def test_a_student_cell_cannot_fool_the_milestone_judge(graded, trickster):
    judged = milestone_1_scored_zero(graded, trickster)
    assert "Milestone 1 needs 85%" in judged and "Judged by the grader" in judged
    assert "Look at your build_model cell." in judged  # one hidden unit: the model, not a module


@pytest.mark.parametrize("student", MODEL_TRICKS)
@foundation
def test_a_dishonest_build_model_cell_scores_zero_with_the_reason_and_reads_no_file(graded, student):
    judged = milestone_1_scored_zero(graded, student)
    assert MODEL_TRICKS[student] in judged and SECRET not in judged


def milestone_1_scored_zero(graded, student):
    """The student's graded Milestone 1 notebook as text, after checking it scored 0 of 10."""
    root, outcomes = graded
    o = outcomes[(student, "milestone_1")]
    assert o.graded and o.max_score == 10 and o.score == 0, o
    return json.dumps(notebook(root, f"autograded/{student}", "milestone_1").cells)


@foundation
def test_release_notebooks_hold_no_solution_code(graded):
    root, _ = graded
    for a in ASSIGNMENTS:
        release = json.dumps(notebook(root, "release", a).cells)
        assert "BEGIN SOLUTION" not in release and "BEGIN HIDDEN TESTS" not in release


@foundation
def test_the_class_summary_and_report_show_each_mark_milestone_rates_and_the_hardest_tests(graded):
    from tito.grading import summary
    from tito.release import nbgrader_api
    from tito.report import completion, hardest_tests, read_gradebook

    root, outcomes = graded
    text = "\n".join(summary(list(outcomes.values())))
    assert "dee              05_dense         NOT GRADED  05_dense.ipynb is not a readable notebook" in text
    grades = read_gradebook(nbgrader_api(root).coursedir.db_url)
    assert ("milestone_1", 8 + len(MODEL_TRICKS), 1) in completion(grades)  # only ada reaches it
    assert ("03_activations/test-relu-grad", 3, 4) in hardest_tests(
        grades
    )  # ben (blank), cy (the bug), dee (the crash)


# ---------------------------------------------------------------------- Modules 06–11, Milestone 2
REVOLUTION = MODULES[5:11] + ["milestone_2"]
CONV_BUG = next(
    v
    for v in yaml.safe_load((REPO / "tests" / "wrong_variants" / "06_spatial.yml").read_text())
    if v["name"] == "conv-weight-grad-with-swapped-axes"
)


@pytest.fixture(scope="module")
def graded_revolution(tmp_path_factory):
    from tito.grading import autograde

    root = course_copy(tmp_path_factory)
    for a in MODULES[:11] + ["milestone_2"]:  # a milestone is graded on the student's own 01–11
        submit(root, "ada", a, solved(root, a))
        submit(root, "ben", a, notebook(root, "release", a))
        cy = solved(root, a)
        if a == "06_spatial":
            cell = next(c for c in cy.cells if c.metadata.get("nbgrader", {}).get("grade_id") == CONV_BUG["cell"])
            cell.source = cell.source.replace(CONV_BUG["old"], CONV_BUG["new"])
        submit(root, "cy", a, cy)
    outcomes = autograde(root, assignments=REVOLUTION, students=["ada", "ben", "cy"])
    return root, {(o.student, o.assignment): o for o in outcomes}


@pytest.mark.slow
@revolution
def test_revolution_reference_gets_full_marks_and_the_milestone(graded_revolution):
    root, outcomes = graded_revolution
    for a in REVOLUTION:
        o = outcomes[("ada", a)]
        assert o.graded and o.max_score > 0 and o.score == o.max_score, (a, o)
    judged = json.dumps(notebook(root, "autograded/ada", "milestone_2").cells)
    assert "MILESTONE 2 ACHIEVED" in judged and "speed check" in judged


@pytest.mark.slow
@revolution
def test_revolution_untouched_release_scores_zero_without_crashing(graded_revolution):
    _, outcomes = graded_revolution
    for a in REVOLUTION:
        o = outcomes[("ben", a)]
        assert o.graded and o.score == 0, (a, o)


@pytest.mark.slow
@revolution
def test_revolution_swapped_conv_weight_gradient_costs_exactly_its_tests_and_milestone_2(graded_revolution):
    root, outcomes = graded_revolution
    lost = {name for name, (score, top) in cell_scores(root, "cy", "06_spatial").items() if score < top}
    assert lost == set(CONV_BUG["fails"]), lost
    for a in MODULES[6:11]:
        assert outcomes[("cy", a)].score == outcomes[("cy", a)].max_score, a
    o = outcomes[("cy", "milestone_2")]
    assert o.graded and o.score == 0, o
    judged = json.dumps(notebook(root, "autograded/cy", "milestone_2").cells)
    assert "Milestone 2 needs 65%" in judged and "Look at your 06_spatial: it keeps the model from learning." in judged


# ---------------------------------------------------------------------- Modules 12–16, Milestone 3
GENERATION = MODULES[11:16] + ["milestone_3"]
MASK_BUG = next(
    v
    for v in yaml.safe_load((REPO / "tests" / "wrong_variants" / "14_attention.yml").read_text())
    if v["name"] == "causal-mask-lets-position-t-see-t-plus-1"
)


@pytest.fixture(scope="module")
def graded_generation(tmp_path_factory):
    from tito.grading import autograde

    root = course_copy(tmp_path_factory)
    for a in MODULES + ["milestone_3"]:  # a milestone is graded on the student's own 01–16
        submit(root, "ada", a, solved(root, a))
        submit(root, "ben", a, notebook(root, "release", a))
        cy = solved(root, a)
        if a == "14_attention":
            cell = next(c for c in cy.cells if c.metadata.get("nbgrader", {}).get("grade_id") == MASK_BUG["cell"])
            cell.source = cell.source.replace(MASK_BUG["old"], MASK_BUG["new"])
        submit(root, "cy", a, cy)
    outcomes = autograde(root, assignments=GENERATION, students=["ada", "ben", "cy"])
    return root, {(o.student, o.assignment): o for o in outcomes}


@pytest.mark.slow
@generation
def test_generation_reference_gets_full_marks_and_the_milestone(graded_generation):
    root, outcomes = graded_generation
    for a in GENERATION:
        o = outcomes[("ada", a)]
        assert o.graded and o.max_score > 0 and o.score == o.max_score, (a, o)
    judged = json.dumps(notebook(root, "autograded/ada", "milestone_3").cells)
    assert "MILESTONE 3 ACHIEVED" in judged and "speed check" in judged


@pytest.mark.slow
@generation
def test_generation_untouched_release_scores_zero_without_crashing(graded_generation):
    _, outcomes = graded_generation
    for a in GENERATION:
        o = outcomes[("ben", a)]
        assert o.graded and o.score == 0, (a, o)


@pytest.mark.slow
@generation
def test_generation_mask_that_sees_the_next_position_costs_exactly_its_tests_and_milestone_3(graded_generation):
    root, outcomes = graded_generation
    lost = {name for name, (score, top) in cell_scores(root, "cy", "14_attention").items() if score < top}
    assert lost == set(MASK_BUG["fails"]), lost
    for a in ["12_tokenization", "13_embeddings", "15_transformer", "16_tinygpt"]:
        assert outcomes[("cy", a)].score == outcomes[("cy", a)].max_score, a
    o = outcomes[("cy", "milestone_3")]
    assert o.graded and o.score == 0, o
    assert "the model looks at the future" in json.dumps(notebook(root, "autograded/cy", "milestone_3").cells)
