"""Realistic wrong versions of the reference solutions must lose points, and only where they live.

Each file in wrong_variants/ is named after a module and lists bugs a student could plausibly write:
    - name: relu-mask-flipped          # what the bug is
      cell: relu                       # grade_id of the solution cell to edit
      old: "x.data > 0"                # text in that cell (must occur exactly once) ...
      new: "x.data < 0"                # ... and what the student wrote instead
      fails: [test-relu, test-relu-grad]   # exactly the test cells that must fail
      breaks: [6ac5f29e]               # optional: ids of cells that are not tests but raise with the bug
      may_break: [b059a85e]            # optional: ids of cells that raise only on a slow machine
The module notebook from source/ (hidden tests included) runs with the reference solutions of the
earlier modules beside it, as `tito module complete` and the grader run it; all variants of one module
run in one kernel, reset between them (a kernel start per variant was most of this file's time).
"""

import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from tito.course import notebook_path, prerequisites

REPO = Path(__file__).resolve().parent.parent
VARIANTS = Path(__file__).resolve().parent / "wrong_variants"


def variants():
    for path in sorted(VARIANTS.glob("*.yml")):
        for variant in yaml.safe_load(path.read_text()):
            yield pytest.param(path.stem, variant, id=f"{path.stem}:{variant['name']}")


def apply_variant(nb, variant):
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == variant["cell"]]
    assert len(cells) == 1, f"no solution cell with grade_id {variant['cell']!r}"
    cell = cells[0]
    assert cell.metadata["nbgrader"].get("solution"), f"{variant['cell']} is not a solution cell"
    assert cell.source.count(variant["old"]) == 1, f"{variant['old']!r} must occur once in {variant['cell']}"
    start = cell.source.index(variant["old"])
    end = start + len(variant["old"])
    inside = any(a <= start and end <= b for a, b in solution_regions(cell.source))  # markers may anchor it
    assert inside, f"{variant['name']}: {variant['old']!r} is not inside ### BEGIN/END SOLUTION (given code)"
    cell.source = cell.source.replace(variant["old"], variant["new"])


def solution_regions(source):
    """(start, end) character offsets of each ### BEGIN SOLUTION ... ### END SOLUTION block, markers included."""
    regions, at = [], 0
    while (begin := source.find("### BEGIN SOLUTION", at)) != -1:
        end = source.index("### END SOLUTION", begin) + len("### END SOLUTION")
        regions.append((begin, end))
        at = end
    return regions


def test_every_module_with_notebooks_has_at_least_three_variants():
    modules = [p.name for p in (REPO / "source").iterdir() if p.name[:2].isdigit()]
    counts = {
        m: len(yaml.safe_load((VARIANTS / f"{m}.yml").read_text())) if (VARIANTS / f"{m}.yml").exists() else 0
        for m in modules
    }
    assert all(n >= 3 for n in counts.values()), counts


@pytest.fixture(scope="session")
def module_runs(tmp_path_factory):
    """module -> {variant name: (results, first error)}. All variants of a module run one after another
    in one kernel (tito.checking.run_versions resets it between them), with the reference solutions of
    the earlier modules beside the notebook, as `tito module complete` and the grader run it."""
    from tito.checking import run_versions

    cache = {}

    def run(module):
        if module not in cache:
            folder = tmp_path_factory.mktemp(module)
            for m in [*prerequisites(module), module]:
                shutil.copytree(REPO / "source" / m, folder / m)
            versions, names = [], []
            for variant in yaml.safe_load((VARIANTS / f"{module}.yml").read_text()):
                nb = nbformat.read(str(notebook_path(folder, module)), as_version=4)
                apply_variant(nb, variant)
                versions.append(nb)
                names.append(variant["name"])
            cache[module] = dict(zip(names, run_versions(folder / module, versions, through_last_test=True)))
        return cache[module]

    return run


def grouped_variants():
    """Each module's variants on one xdist worker, which runs them all in one kernel."""
    for param in variants():
        module, variant = param.values
        yield pytest.param(module, variant, id=param.id, marks=pytest.mark.xdist_group(f"variants-{module}"))


@pytest.mark.slow
@pytest.mark.parametrize("module,variant", list(grouped_variants()))
def test_wrong_variant_loses_exactly_the_points_of_the_tests_that_cover_it(module, variant, module_runs):
    results, other_errors = module_runs(module)[variant["name"]]
    failed = sorted(r.grade_id for r in results if not r.passed)
    assert failed == sorted(variant["fails"]), (
        f"{variant['name']}: expected exactly {sorted(variant['fails'])} to fail, got {failed}\n"
        + "\n".join(f"  {r.grade_id}: {r.error}" for r in results if not r.passed)
    )
    broken = {e.key for e in other_errors}
    listed = {str(b) for b in variant.get("breaks", [])}  # an id of digits reads as an int
    may = {str(b) for b in variant.get("may_break", [])}  # a cell that fails or not with the machine's speed
    assert listed <= broken <= listed | may, (
        f"{variant['name']}: cells that are not tests raised: {other_errors or 'none'}; "
        f"the variant lists {sorted(listed)} (an error outside the tests must be expected)"
    )


def test_a_variant_that_edits_given_code_is_refused():
    nb = nbformat.read(str(REPO / "source" / "01_tensor" / "01_tensor.ipynb"), as_version=4)
    given = {"name": "edits-the-given-switch", "cell": "tensor-class", "old": "grad_enabled = True", "new": "x = 1"}
    with pytest.raises(AssertionError, match="not inside ### BEGIN/END SOLUTION"):
        apply_variant(nb, given)
