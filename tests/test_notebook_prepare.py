"""prepare(): which tinytorch a notebook imports, in each place it can run."""

import pytest

from tito.notebook import PACKAGE_ENV, notebook_folder, prepare


def test_students_and_instructors_use_the_sibling_notebooks(tmp_path):
    here = tmp_path / "course" / "04_layers"
    here.mkdir(parents=True)
    assert notebook_folder(here) == (tmp_path / "course", "your notebooks")


def test_autograding_imports_the_package_the_grader_exported(tmp_path, monkeypatch, capsys):
    # tito.grading.GradingExecute exports the reference modules and names the folder; no notebook is read
    (tmp_path / "tinytorch").mkdir()
    (tmp_path / "tinytorch" / "__init__.py").write_text("MARK = 'exported by the grader'\n")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setenv(PACKAGE_ENV, str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    prepare("02_autograd", cwd=tmp_path / "nowhere")
    import tinytorch

    assert tinytorch.MARK == "exported by the grader"
    assert "the course's reference code of 01_tensor" in capsys.readouterr().out


def test_a_graded_kernels_setup_cell_imports_no_notebook_reader():
    # every graded notebook starts with prepare(): nbformat (its schema validator) took a second to import
    import subprocess
    import sys

    code = "import sys, tito.notebook; print(sorted({'nbformat', 'jsonschema'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


@pytest.fixture(autouse=True)
def _forget_tinytorch():
    import sys

    saved = {k: v for k, v in sys.modules.items() if k == "tinytorch" or k.startswith("tinytorch.")}
    yield
    for k in [k for k in sys.modules if k == "tinytorch" or k.startswith("tinytorch.")]:
        del sys.modules[k]
    sys.modules.update(saved)


def test_the_grader_reads_the_submitted_folder_from_the_nbgrader_configuration(tmp_path):
    from traitlets.config import Config

    from tito.grading import GradingExecute

    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.submitted_directory = "inbox"
    grader = GradingExecute(config=config)
    assert grader.notebooks_for("ada", "milestone_1") == tmp_path / "inbox" / "ada"
