"""A simulated class of 20, graded in parallel: each student's marks, and what the report makes of them.

Made from the reference solutions: perfect students, blank ones (the release notebooks), students who
stop after 03, and students with realistic bugs from tests/wrong_variants/ (one or two each). A bug
costs exactly its tests in its module (modules are graded on the reference code of the others), and
the milestone (graded on the student's own modules) fails only when the bug breaks training.
"""

import pytest
import yaml
from test_autograde import course_copy, notebook, solved, submit
from test_wrong_variants import VARIANTS, apply_variant

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("simulated-class")]
MODULES = ["01_tensor", "02_autograd", "03_activations", "04_layers", "05_dense"]
ASSIGNMENTS = MODULES + ["milestone_1"]
BUGS = {  # variant -> does Milestone 1 still pass with it?
    "rsub-sign-flipped": True,  # 01: training never subtracts a tensor from a number
    "relu-grad-mask-ge": True,  # 03: the gradient at exactly 0 is a measure-zero case
    "parameters-count-shared-twice": True,  # 04: no parameter is shared in an MLP
    "momentum-velocity-sign-flipped": False,  # 05: SGD climbs the loss
    "cross-entropy-logsumexp-over-the-batch-axis": False,  # 05: the loss is not the loss
    "div-rule-sign-flipped": True,  # 02: no division in an MLP's training
}


def variant(name):
    for path in sorted(VARIANTS.glob("*.yml")):
        for v in yaml.safe_load(path.read_text()):
            if v["name"] == name:
                return path.stem, v
    raise KeyError(name)


def points(root):
    """{(assignment, grade_id): points} from source/."""
    found = {}
    for a in ASSIGNMENTS:
        for cell in notebook(root, "source", a).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade"):
                found[(a, meta["grade_id"])] = meta.get("points", 0)
    return found


def simulated_class(root):
    """{student: (bugs, assignments submitted)}; writes their submissions."""
    bugs = list(BUGS)
    students = {f"perfect-{i}": ([], ASSIGNMENTS) for i in range(3)}
    students |= {f"blank-{i}": ("blank", ASSIGNMENTS) for i in range(3)}
    students |= {f"stopped-{i}": ([], MODULES[:3]) for i in range(2)}
    students |= {f"bug-{i:02d}": ([bugs[i % len(bugs)]], ASSIGNMENTS) for i in range(9)}
    students |= {f"two-bugs-{i}": ([bugs[i], bugs[i + 3]], ASSIGNMENTS) for i in range(2)}
    students |= {"bug-and-stopped": ([bugs[1]], MODULES[:4])}
    for student, (its_bugs, submitted) in students.items():
        for a in submitted:
            if its_bugs == "blank":
                submit(root, student, a, notebook(root, "release", a))
                continue
            nb = solved(root, a)
            for bug in its_bugs:
                module, v = variant(bug)
                if module == a:
                    apply_variant(nb, v)
            submit(root, student, a, nb)
    return students


def expected_marks(students, table):
    """{(student, assignment): score} for what each student submitted."""
    full = {a: sum(p for (b, _), p in table.items() if b == a) for a in ASSIGNMENTS}
    marks = {}
    for student, (bugs, submitted) in students.items():
        for a in submitted:
            if bugs == "blank":
                marks[student, a] = 0
            elif a == "milestone_1":
                ok = set(MODULES) <= set(submitted) and all(BUGS[b] for b in bugs)
                marks[student, a] = full[a] if ok else 0
            else:
                lost = {t for b in bugs for m, v in [variant(b)] if m == a for t in v["fails"]}
                marks[student, a] = full[a] - sum(table[(a, t)] for t in lost)
    return marks


def test_a_class_of_20_graded_in_parallel(tmp_path_factory):
    from tito.class_grading import grade_class
    from tito.grading import modules_at_fault
    from tito.release import nbgrader_api
    from tito.report import completion, predictors, read_gradebook, report

    root = course_copy(tmp_path_factory)
    students = simulated_class(root)
    outcomes, _ = grade_class(root, workers=2, log=lambda *_: None)
    got = {(o.student, o.assignment): o.score for o in outcomes}
    assert all(o.graded for o in outcomes), [o for o in outcomes if not o.graded]
    table = points(root)
    marks = expected_marks(students, table)
    assert got == marks

    grades = read_gradebook(nbgrader_api(root).coursedir.db_url)
    rows = dict((a, (s, c)) for a, s, c in completion(grades))
    assert rows["01_tensor"] == (20, 20 - 3 - 3)  # not the blanks, nor the three with the rsub bug
    assert rows["milestone_1"][0] == 20 - 3  # all but the three who stopped
    for a in ASSIGNMENTS:  # the funnel: submitted, and complete (full marks)
        full = sum(p for (b, _), p in table.items() if b == a)
        assert rows[a] == (sum(b == a for _, b in marks), sum(m == full for (_, b), m in marks.items() if b == a))
    worst = predictors(grades)["milestone_1"][0]
    assert worst[0] == "05_dense" and worst[1] > worst[2], worst
    lines = report(nbgrader_api(root).coursedir.db_url, root / "reports", at_fault=modules_at_fault(root))
    # the four whose bugs break training: each bug is in 05_dense (one also has 01's rsub sign, which
    # training never uses), and the diagnosis names 05_dense for each of them
    at = lines.index("Failed milestone_1: the module found at fault (short trainings with the course's modules):")
    assert lines[at + 1].split() == ["05_dense", "4", "####"], lines[at:]
    for figure in ["heatmap.png", "funnel.png"]:
        assert (root / "reports" / figure).stat().st_size > 10_000, lines
