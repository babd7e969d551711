"""prepare(): which notebooks feed the tinytorch a notebook imports, in each place it can run."""
from tito.notebook import notebook_folder


def test_student_and_instructor_use_the_sibling_notebooks(tmp_path):
    here = tmp_path / "course" / "04_layers"
    here.mkdir(parents=True)
    assert notebook_folder("04_layers", here) == tmp_path / "course"
    assert notebook_folder("milestone_1", here) == tmp_path / "course"


def test_autograde_grades_a_module_on_its_own_code_and_a_milestone_on_the_students(tmp_path):
    (tmp_path / "source").mkdir()
    module = tmp_path / "autograded" / "ada" / "04_layers"
    milestone = tmp_path / "autograded" / "ada" / "milestone_1"
    module.mkdir(parents=True)
    milestone.mkdir(parents=True)
    assert notebook_folder("04_layers", module) == tmp_path / "source"
    assert notebook_folder("milestone_1", milestone) == tmp_path / "submitted" / "ada"
