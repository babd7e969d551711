"""After a milestone failed in grading: which of the student's modules keeps the model from learning.

The judge trained the student's model with all of their modules and it stayed under the threshold.
Short trainings (the milestone's `diagnosis` recipe in milestone.yml) then take the first k required
modules from the course's reference solutions and the rest from the student's notebooks. Modules
build on each other, so a prefix of reference modules keeps every run meaningful (the student's later
modules run on the course's earlier ones, as they would on their own correct ones):
- k = all: the course's modules with the student's build_model. Not learning here means the model
  itself is at fault (build_model), not a module.
- k = 0: the student's modules on the short recipe. Learning here means the short run cannot tell.
- otherwise the smallest k that learns (a binary search, since more reference modules never hurt):
  module k is the first that, once correct, lets the model learn. It is named to the student.
A run "learns" when its accuracy is nearer the all-course run's than the student's own (a run that
failed counts as chance).

Student code runs in these trainings, beside reference code. Only the accuracies counted by the
judge and the module's name reach the student: the runs' own output and failure messages are
dropped, never shown.
"""

import shutil
import tempfile
import time
from pathlib import Path

from milestones.judge import BelowThreshold, MilestoneFailure, judge, reference_package

CHANCE = 0.10  # ten classes in both image milestones: the accuracy of a run that failed
MIN_GAP = 0.03  # the all-course run must beat the student's own by this much for the search to mean anything


def module_at_fault(milestone, folder, source, requires, model_source, sandbox=None, log=print):
    """(module, verdict) after a below-threshold failure, or (None, why not) when the short runs cannot
    tell. folder: the student's notebooks; source: the course's reference notebooks (source/)."""
    recipe = milestone.CONFIG.get("diagnosis")
    if not recipe:
        return None, None
    budget, model_sound = float(recipe.get("budget_s", 300)), float(recipe.get("model_sound", 0.3))
    changes = {k: v for k, v in recipe.items() if k not in ("budget_s", "model_sound")}  # the judge's recipe changes
    reference = reference_package(requires, None, source)
    started = time.perf_counter()
    accuracy = {}

    def run(k):
        if time.perf_counter() - started > budget:
            raise TimeoutError
        if k not in accuracy:
            accuracy[k] = _short_run(milestone, folder, source, requires, k, model_source, sandbox, reference, changes)
            log(f"  which module? {_with(requires, k)}: {_reaches(accuracy[k])}")
        return accuracy[k]

    n = len(requires)
    try:
        best = run(n)
        if best is None or best < model_sound:
            return "build_model", (
                "Which module? In a short training (the judge's recipe on fewer images) with all of the "
                f"course's modules in place of yours, your build_model's model {_reaches(best)}: the model "
                "itself, not a module, keeps it from learning. Look at your build_model cell."
            )
        worst = run(0)
        worst = CHANCE if worst is None else worst
        if best - worst < MIN_GAP:
            return None, (
                f"Which module? In short trainings your model {_reaches(accuracy[0])} with your modules and "
                f"{_reaches(best)} with the course's: too close to tell which module keeps the full training "
                "under the threshold."
            )
        learns = (best + worst) / 2

        def healthy(k):
            value = run(k)
            return value is not None and value >= learns

        lo, hi = 0, n  # lo does not learn, hi does
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if healthy(mid):
                hi = mid
            else:
                lo = mid
    except TimeoutError:
        return None, f"Which module? The short trainings did not finish within {budget:g} s."
    module = requires[hi - 1]
    return module, (
        "Which module? Short trainings (the judge's recipe on fewer images) with some of the course's "
        f"modules in place of yours: with {_with(requires, hi)} your model {_reaches(accuracy[hi])}; with "
        f"{_with(requires, lo)} it {_reaches(accuracy[lo])}. Look at your {module}: it keeps the model "
        "from learning."
    )


def _short_run(milestone, folder, source, requires, k, model_source, sandbox, reference, changes):
    """Accuracy of a short training with the first k required modules from source, the rest from folder
    (None when the run failed before an accuracy: its message is not shown, it may quote course code)."""
    with tempfile.TemporaryDirectory(prefix="tinytorch-diagnosis-") as work:
        work = Path(work)
        for i, module in enumerate(requires):
            (work / "notebooks" / module).mkdir(parents=True)
            origin = Path(source if i < k else folder) / module / f"{module}.ipynb"
            if origin.is_symlink() or not origin.is_file():  # collected submissions hold no links
                return None
            shutil.copyfile(origin, work / "notebooks" / module / f"{module}.ipynb")
        from tito.notebook import build_tinytorch

        package, report = build_tinytorch(work / "notebooks", requires, work / "package")
        if any(report.values()):
            return None
        try:
            return judge(
                milestone, package, model_source, log=_drop, sandbox=sandbox, reference=reference, **changes
            ).accuracy
        except BelowThreshold as failed:
            return failed.measure
        except MilestoneFailure:
            return None


def _drop(*args, **kwargs):
    pass


def _span(requires, k):
    return requires[0] if k == 1 else f"{requires[0]}–{requires[k - 1]}"


def _with(requires, k):
    """Which modules a run took from where, e.g. "the course's 01_tensor–04_layers and your 05_dense"."""
    if k == 0:
        return "only your own modules"
    course = f"the course's {_span(requires, k)}"
    return course if k == len(requires) else f"{course} and your {_span(requires[k:], len(requires) - k)}"


def _reaches(value):
    return "stopped with an error (no accuracy)" if value is None else f"reaches {value:.1%}"
