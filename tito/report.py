"""Curriculum validation: what a graded class says about the course, read from the gradebook.

Milestones are the course's quality detectors: a module whose tests pass while its milestone fails
tests too little, and a module most students stop at teaches too much at once. This reads every
student's score on every test cell and reports, in course order:
    - completion: who submitted each assignment and who got every test of it right;
    - where students stop: the first assignment each student did not complete;
    - the tests failed most;
    - which module's failures predict a milestone's failure (how much likelier the milestone fails
      when that module was not complete);
and draws two figures: a students x tests heatmap and a completion funnel.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def course_order():
    """Every assignment in the order students meet them: each milestone right after its trigger."""
    from tito.course import MODULES, milestones

    order = []
    for module in MODULES:
        order.append(module)
        order += [m.assignment for m in milestones() if m.trigger == module]
    return order


@dataclass
class ClassGrades:
    students: list  # student ids, sorted
    tests: list  # (assignment, grade_id) in course order, then notebook order
    max_scores: np.ndarray  # (tests,)
    scores: np.ndarray  # (students, tests); nan where the student submitted nothing for that assignment

    @property
    def assignments(self):
        return list(dict.fromkeys(a for a, _ in self.tests))

    def columns(self, assignment):
        return [i for i, (a, _) in enumerate(self.tests) if a == assignment]

    def submitted(self, assignment):
        """(students,) bool: submitted this assignment."""
        return ~np.isnan(self.scores[:, self.columns(assignment)]).all(axis=1)

    def complete(self, assignment):
        """(students,) bool: every test of the assignment has full marks."""
        cols = self.columns(assignment)
        return (np.nan_to_num(self.scores[:, cols], nan=-1.0) >= self.max_scores[cols] - 1e-9).all(axis=1)


def read_gradebook(db_url):
    """Every student's score on every autograded test cell (grade cells with points)."""
    from nbgrader.api import Gradebook

    rank = {name: i for i, name in enumerate(course_order())}
    with Gradebook(db_url) as gb:
        students = sorted(s.id for s in gb.students)
        tests = []
        for assignment in sorted(gb.assignments, key=lambda a: (rank.get(a.name, len(rank)), a.name)):
            for notebook in assignment.notebooks:
                tests += [
                    (assignment.name, cell.name, cell.max_score) for cell in notebook.grade_cells if cell.max_score
                ]
        column = {(a, name): i for i, (a, name, _) in enumerate(tests)}
        scores = np.full((len(students), len(tests)), np.nan)
        row = {s: i for i, s in enumerate(students)}
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        key = (assignment.name, grade.name)
                        if key in column:
                            scores[row[submission.student.id], column[key]] = grade.score or 0.0
    return ClassGrades(students, [(a, n) for a, n, _ in tests], np.array([m for *_, m in tests], float), scores)


def completion(grades):
    """[(assignment, submitted, complete)] counts of students, in course order."""
    return [(a, int(grades.submitted(a).sum()), int(grades.complete(a).sum())) for a in grades.assignments]


def stopping_points(grades):
    """Counter: the first assignment, in course order, that each student did not complete ('finished'
    when they completed everything)."""
    stops = Counter()
    done = np.array([grades.complete(a) for a in grades.assignments])  # (assignments, students)
    for s in range(len(grades.students)):
        missing = np.flatnonzero(~done[:, s])
        stops[grades.assignments[missing[0]] if len(missing) else "finished"] += 1
    return stops


def hardest_tests(grades, n=10):
    """[(assignment/grade_id, students who lost points, students who submitted)], most failed first."""
    submitted = ~np.isnan(grades.scores)
    lost = submitted & (np.nan_to_num(grades.scores) < grades.max_scores - 1e-9)
    rows = [(f"{a}/{t}", int(lost[:, i].sum()), int(submitted[:, i].sum())) for i, (a, t) in enumerate(grades.tests)]
    return sorted((r for r in rows if r[1]), key=lambda r: -r[1])[:n]


def predictors(grades):
    """For each milestone in the gradebook: [(module, P(milestone fails | module incomplete),
    P(milestone fails | module complete), students with the module incomplete)], the strongest
    predictor first. Only students who submitted the milestone count."""
    from tito.course import milestones

    found = {}
    for m in milestones():
        if m.assignment not in grades.assignments:
            continue
        tried = grades.submitted(m.assignment)
        failed = ~grades.complete(m.assignment)
        rows = []
        for module in m.requires:
            if module not in grades.assignments:
                continue
            incomplete = ~grades.complete(module) & tried
            complete = grades.complete(module) & tried
            if incomplete.any():
                p_bad = failed[incomplete].mean()
                p_good = failed[complete].mean() if complete.any() else float("nan")
                rows.append((module, float(p_bad), float(p_good), int(incomplete.sum())))
        found[m.assignment] = sorted(rows, key=lambda r: -(r[1] - np.nan_to_num(r[2])))
    return found


def plot_heatmap(grades, path):
    """Students x tests: green full marks, red none, grey not submitted; one band per assignment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = grades.scores / grades.max_scores
    width = max(8.0, 0.045 * len(grades.tests) + 3)
    fig, ax = plt.subplots(figsize=(width, 1.5 + 0.28 * len(grades.students)))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#d0d0d0")
    ax.imshow(np.ma.masked_invalid(share), cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(grades.students)), grades.students, fontsize=7)
    starts = [grades.columns(a)[0] for a in grades.assignments]
    for x in starts[1:]:
        ax.axvline(x - 0.5, color="black", lw=0.6)
    centres = [(grades.columns(a)[0] + grades.columns(a)[-1]) / 2 for a in grades.assignments]
    ax.set_xticks(centres, grades.assignments, rotation=60, ha="right", fontsize=7)
    ax.set_title("Every student's score on every test (green: full marks, red: none, grey: not submitted)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_funnel(grades, path):
    """How many students submitted and completed each assignment, in course order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = completion(grades)
    names = [a for a, _, _ in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * len(rows) + 2), 4))
    ax.bar(x, [s for _, s, _ in rows], color="#c8d8ec", label="submitted")
    ax.bar(
        x,
        [c for *_, c in rows],
        color=["#d98b2b" if a.startswith("milestone") else "#3d7ab8" for a in names],
        label="complete (every test right)",
    )
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("students")
    ax.set_ylim(0, len(grades.students) * 1.2)  # room for the legend above the bars
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title("Completion funnel across modules and milestones (milestones in orange)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(db_url, out_dir, notes=(), at_fault=None):
    """The terminal report as lines; writes heatmap.png and funnel.png into out_dir. notes: lines that
    head the report and are saved with it in report.txt (e.g. that grading ran without the sandbox).
    at_fault: {milestone: {module: failures}} (tito.grading.modules_at_fault)."""
    grades = read_gradebook(db_url)
    n = len(grades.students)
    if not n or not grades.tests:
        return [*notes, "The gradebook has no graded submissions yet."]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        *notes,
        f"Curriculum validation: {n} students, {len(grades.assignments)} assignments, {len(grades.tests)} tests",
        "",
        f"  {'assignment':<16} {'submitted':>10} {'complete':>10}",
    ]
    for assignment, submitted, complete in completion(grades):
        lines.append(f"  {assignment:<16} {submitted:>10} {complete:>6} {complete / n:4.0%}")
    lines += ["", "Where students stop (the first assignment not complete):"]
    order = {a: i for i, a in enumerate(grades.assignments + ["finished"])}
    for assignment, count in sorted(stopping_points(grades).items(), key=lambda kv: order[kv[0]]):
        lines.append(f"  {assignment:<16} {count:>4} {'#' * count}")
    lines += ["", "Tests failed most (students who lost points / submitted):"]
    lines += [f"  {lost:>4}/{tried:<4} {name}" for name, lost, tried in hardest_tests(grades)]
    for milestone, rows in predictors(grades).items():
        lines += ["", f"What predicts failing {milestone} (P(fail | module incomplete) vs P(fail | complete)):"]
        lines += [
            f"  {module:<16} {bad:5.0%} vs {good:5.0%}   ({k} students incomplete)" for module, bad, good, k in rows[:5]
        ]
        if not rows:
            lines.append("  every student who tried it had completed its modules")
    for milestone, modules in sorted((at_fault or {}).items()):
        lines += ["", f"Failed {milestone}: the module found at fault (short trainings with the course's modules):"]
        lines += [
            f"  {module:<16} {count:>4} {'#' * count}"
            for module, count in sorted(modules.items(), key=lambda kv: -kv[1])
        ]
    lines += [
        "",
        f"Figures: {plot_heatmap(grades, out_dir / 'heatmap.png')}",
        f"         {plot_funnel(grades, out_dir / 'funnel.png')}",
        f"This report: {out_dir / 'report.txt'}",
    ]
    (out_dir / "report.txt").write_text("\n".join(lines) + "\n")
    return lines
