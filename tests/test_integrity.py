"""tito.integrity.scan: honest solutions read clean, code that reaches for the testing machinery does not."""

from pathlib import Path

import nbformat
import pytest
import yaml

from tito.integrity import changed, course_libraries, scan

REPO = Path(__file__).resolve().parent.parent


def solution_cells():
    """(module, grade_id) -> (source, the library names the course's cells bind), as the grader reads them."""
    found = {}
    for path in sorted((REPO / "source").glob("*/*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        libraries = course_libraries(nb)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("solution"):
                found[path.parent.name, meta["grade_id"]] = cell.source, libraries
    return found


def test_every_reference_solution_and_every_wrong_variant_reads_clean():
    cells = solution_cells()
    assert len(cells) > 100
    for (module, gid), (source, libraries) in cells.items():
        assert scan(source, *libraries) == [], (module, gid, scan(source, *libraries))
    variants = 0
    for path in sorted((REPO / "tests" / "wrong_variants").glob("*.yml")):
        for v in yaml.safe_load(path.read_text()):
            source, libraries = cells[(path.stem, v["cell"])]
            source = source.replace(v["old"], v["new"])
            assert scan(source, *libraries) == [], (path.stem, v["name"], scan(source, *libraries))
            variants += 1
    assert variants > 200


def test_a_solution_may_name_its_own_variable_like_data_in_a_course_cell():
    # 01's test cells compute `big = randn(200, 200, ...).data`: data made by a call, not a library
    # object, so a solution's own `big` (or `logits`, `w`...) is not rebinding what the tests rely on.
    nb = nbformat.read(str(REPO / "source" / "01_tensor" / "01_tensor.ipynb"), as_version=4)
    assert "big = randn(" in "".join(c.source for c in nb.cells)
    assert scan("big = np.ones(3)", *course_libraries(nb)) == []
    assert scan("m = np.linalg\nm = 1", *course_libraries(nb)) == []  # the solution's own alias, rebound
    assert scan("np = 1", *course_libraries(nb)) != []


@pytest.mark.parametrize(
    "code,why",
    [
        ("import tito.checks\ntito.checks.gradcheck = lambda *a: None", "imports tito"),
        ("from tito import checks", "imports tito"),
        ("import sys\nsys.modules['numpy'].allclose = None", "imports sys"),
        ("import builtins", "imports builtins"),
        ("np.allclose = lambda *a, **k: True", "belongs to a library"),
        ("import numpy as n2\nn2.testing.assert_allclose = print", "reaches .testing"),
        ("m = np\nm.allclose = print", "belongs to a library"),
        ("setattr(np, 'allclose', print)", "setattr on a library object"),
        ("vars(np)['allclose'] = print", "vars on a library object"),
        ("np.__dict__['allclose'] = print", "namespace"),
        ("get_ipython().ast_transformers.append(1)", "get_ipython"),
        ("def f():\n    return f.__globals__", "__globals__"),
        ("exec('x = 1')", "cannot be read"),
        ("__builtins__['len'] = print", "__builtins__"),
        ("del np.allclose", "belongs to a library"),
        ("from numpy.testing import assert_allclose", "numpy.testing"),
        ("import importlib", "imports importlib"),
        ("(1).__class__.__base__.__subclasses__()", "__subclasses__"),
        ("class np:\n    allclose = staticmethod(lambda *a, **k: True)", "rebinds np"),
        ("import math as np", "rebinds np"),
        ("def f():\n    global np\n    np = None", "rebinds np"),
        ("all = lambda *a: True", "rebinds all"),
        ("def isinstance(*a):\n    return True", "rebinds isinstance"),
        ("ValueError = BaseException", "rebinds ValueError"),
        ("def f():\n    global len", "rebinds len"),
        ("setattr(*(np, 'allclose', print))", "setattr on a library object"),
        ("[np][0].allclose = print", "uses the module np itself"),
        ("def same(m):\n    return m\nsame(np).allclose = print", "belongs to a library"),
        ("getattr(np, 'linalg').norm = print", "belongs to a library"),
        ("sys.settrace(None)", "reaches sys.settrace"),
        ("sys.modules['numpy']", "reaches sys.modules"),
    ],
)
def test_code_that_reaches_the_testing_machinery_is_flagged(code, why):
    findings = scan(code)
    assert findings and why in " ".join(map(str, findings)), findings


def test_fingerprints_compare_only_what_the_baseline_had():
    before = '{"numpy.allclose": "1", "tito.checks.gradcheck": "2"}'
    assert changed(before, '{"numpy.allclose": "1", "tito.checks.gradcheck": "2", "numpy.new": "3"}') == []
    assert changed(before, '{"numpy.allclose": "9", "tito.checks.gradcheck": "2"}') == ["numpy.allclose"]
    assert changed(before, "printed by a student") != []


def test_tito_module_complete_withholds_a_flagged_cell_as_the_grader_does():
    from tito.checking import withhold_flagged_cells

    nb = nbformat.v4.new_notebook()
    honest = nbformat.v4.new_code_cell(
        "def relu(x):\n    return np.maximum(x, 0)", metadata={"nbgrader": {"solution": True}}
    )
    patched = nbformat.v4.new_code_cell("np.allclose = print", metadata={"nbgrader": {"solution": True}})
    added = nbformat.v4.new_code_cell("np.allclose = print")  # not a solution cell: the grader does not run it
    nb.cells = [honest, patched, added]
    withhold_flagged_cells(nb)
    assert honest.source.startswith("def relu") and added.source == "np.allclose = print"
    assert patched.source.startswith("raise RuntimeError('not run by the grader: line 1: `np.allclose = print`")
