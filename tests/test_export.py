"""The exporter: only `#| export` cells go into tinytorch, and broken notebooks give clear messages."""

import subprocess
import sys

import nbformat

from tito.export import export

FIRST = "01_tensor"


def write_notebook(folder, name, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = folder / name / f"{name}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    return path


def import_in_subprocess(build, statement):
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(build)!r}); {statement}"],
        capture_output=True,
        text=True,
    )


def test_only_export_cells_reach_the_package(tmp_path):
    write_notebook(
        tmp_path,
        FIRST,
        "#| default_exp tensor\nprint('setup')",
        "#| export\nimport numpy as np\n\ndef double(x):\n    return 2 * x\n\n_private = 1",
        "def scratch():\n    return 'not exported'",
        "#| export\nclass Box:\n    pass",
    )
    package, report = export(tmp_path, [FIRST], tmp_path / "build")
    assert report == {FIRST: []}
    code = (package / "tensor.py").read_text()
    assert "scratch" not in code and "print('setup')" not in code
    assert "__all__ = ['double', 'Box']" in code
    proc = import_in_subprocess(
        tmp_path / "build", "import tinytorch; print(tinytorch.double(21), tinytorch.EXPORTED_MODULES)"
    )
    assert proc.stdout.split() == ["42", "['01_tensor']"], proc.stderr


def test_syntax_error_is_reported_with_its_cell_and_fails_loudly_on_import(tmp_path):
    write_notebook(
        tmp_path,
        FIRST,
        "#| default_exp tensor",
        "#| export\ndef ok():\n    return 1",
        "#| export\ndef broken(:\n    pass",
    )
    package, report = export(tmp_path, [FIRST], tmp_path / "build")
    assert len(report[FIRST]) == 1
    assert "SyntaxError in 01_tensor.ipynb, cell 3, line 2" in report[FIRST][0]
    proc = import_in_subprocess(tmp_path / "build", "import tinytorch")
    assert "ImportError: SyntaxError in 01_tensor.ipynb, cell 3" in proc.stderr


def test_unreadable_notebook_is_reported_and_the_others_still_export(tmp_path):
    write_notebook(tmp_path, FIRST, "#| default_exp tensor", "#| export\nX = 1")
    corrupt = tmp_path / "02_autograd" / "02_autograd.ipynb"
    corrupt.parent.mkdir()
    corrupt.write_text('{"cells": [')
    package, report = export(tmp_path, [FIRST, "02_autograd", "03_activations"], tmp_path / "build")
    assert report[FIRST] == []
    assert "02_autograd.ipynb is not a readable notebook" in report["02_autograd"][0]
    assert "Revert Notebook to Checkpoint" in report["02_autograd"][0]
    assert "03_activations.ipynb not found" in report["03_activations"][0]
    assert (package / "tensor.py").exists() and not (package / "autograd.py").exists()


def test_notebook_without_target_is_rejected(tmp_path):
    write_notebook(tmp_path, FIRST, "#| export\nX = 1")
    _, report = export(tmp_path, [FIRST], tmp_path / "build")
    assert "no '#| default_exp NAME' line" in report[FIRST][0]


def test_reexport_replaces_the_previous_package(tmp_path):
    write_notebook(tmp_path, FIRST, "#| default_exp tensor", "#| export\nX = 1")
    export(tmp_path, [FIRST], tmp_path / "build")
    (tmp_path / FIRST / f"{FIRST}.ipynb").unlink()
    write_notebook(tmp_path / "again", FIRST, "#| default_exp tensor", "#| export\nY = 2")
    package, _ = export(tmp_path / "again", [FIRST], tmp_path / "build")
    assert "Y = 2" in (package / "tensor.py").read_text()
    assert "X = 1" not in (package / "tensor.py").read_text()
    assert [p.name for p in (tmp_path / "build").iterdir()] == ["tinytorch"]


def test_a_later_module_cannot_silently_shadow_an_earlier_name(tmp_path):
    write_notebook(tmp_path, FIRST, "#| default_exp tensor", "#| export\ndef SGD():\n    return 1")
    write_notebook(tmp_path, "02_autograd", "#| default_exp autograd", "#| export\ndef SGD():\n    return 2")
    _, report = export(tmp_path, [FIRST, "02_autograd"], tmp_path / "build")
    assert report[FIRST] == [] and "`SGD` is already defined by 01_tensor" in report["02_autograd"][0]


def test_replacing_an_earlier_name_on_purpose(tmp_path):
    write_notebook(tmp_path, FIRST, "#| default_exp tensor", "#| export\ndef SGD():\n    return 1")
    write_notebook(
        tmp_path, "02_autograd", "#| default_exp autograd", "#| export replaces: SGD\ndef SGD():\n    return 2"
    )
    _, report = export(tmp_path, [FIRST, "02_autograd"], tmp_path / "build")
    assert report == {FIRST: [], "02_autograd": []}
    proc = import_in_subprocess(tmp_path / "build", "import tinytorch; print(tinytorch.SGD())")
    assert proc.stdout.strip() == "2", proc.stderr


def test_unwritten_functions_are_named_and_traced_to_their_cell(tmp_path):
    stub = "    # YOUR CODE HERE\n    raise NotImplementedError()"
    write_notebook(
        tmp_path,
        FIRST,
        "#| default_exp tensor",
        f"#| export\nclass Box:\n    def open(self):\n{stub.replace('    ', '        ')}\n\n"
        "    def abstract(self):\n        raise NotImplementedError('subclasses do this')",
        f"#| export\n\ndef relu(x):\n{stub}",
    )
    _, report = export(tmp_path, [FIRST], tmp_path / "build")
    assert report[FIRST] == ["not written yet: Box.open, relu (finish 01_tensor, then export again)"]
    code = (
        "import sys, tinytorch\nfrom tito.errors import name_unwritten\ntry:\n    tinytorch.relu(1)\n"
        "except NotImplementedError as err:\n    print(name_unwritten(err))"
    )
    proc = import_in_subprocess(tmp_path / "build", code)
    assert "relu() is not written yet (01_tensor.ipynb, cell 3)" in proc.stdout, proc.stdout + proc.stderr
