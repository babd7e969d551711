"""prepare(): which notebooks feed the tinytorch a notebook imports, in each place it can run."""

from tito.notebook import NOTEBOOKS_ENV, notebook_folder


def test_students_and_instructors_use_the_sibling_notebooks(tmp_path, monkeypatch):
    here = tmp_path / "course" / "04_layers"
    here.mkdir(parents=True)
    monkeypatch.setenv(NOTEBOOKS_ENV, str(tmp_path / "elsewhere"))  # ignored outside autograding
    assert notebook_folder(here) == (tmp_path / "course", "your notebooks")


def test_autograding_uses_the_folder_the_grader_names(tmp_path, monkeypatch):
    # tito.grading.GradingExecute sets these from the nbgrader configuration for each notebook
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setenv(NOTEBOOKS_ENV, str(tmp_path / "source"))
    monkeypatch.setenv("TINYTORCH_NOTEBOOKS_OWNER", "the reference solutions")
    assert notebook_folder(tmp_path / "anywhere") == (tmp_path / "source", "the reference solutions")


def test_the_grader_reads_the_folders_from_the_nbgrader_configuration(tmp_path):
    from traitlets.config import Config

    from tito.grading import GradingExecute

    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.source_directory = "instructor"
    config.CourseDirectory.submitted_directory = "inbox"
    grader = GradingExecute(config=config)
    assert grader.notebooks_for("ada", "04_layers")[0] == tmp_path / "instructor"
    assert grader.notebooks_for("ada", "milestone_1") == (tmp_path / "inbox" / "ada", "ada's submitted notebooks")
