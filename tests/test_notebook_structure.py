"""Every source notebook (and the template new modules start from) has the course's structure:
title, setup cell, export marks, grade ids, points, locked tests, numbered sections, and the tag
that lets "Run All" go on past a failing cell so every test shows its result."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "source").glob("*/*.ipynb")) + [REPO / "docs" / "module-template.ipynb"]


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def first_line(cell):
    return cell.source.lstrip().split("\n", 1)[0].strip()


def judge_cell(assignment):
    number = assignment.split("_")[1]
    for path in (REPO / "milestones").glob("*/milestone.yml"):
        config = yaml.safe_load(path.read_text())
        if str(config["number"]) == number:
            return config["notebook"]["judge_cell"]
    raise AssertionError(f"no milestone.yml for {assignment}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = nbformat.read(str(path), as_version=4)
    cells, assignment = nb.cells, path.stem
    milestone = assignment.startswith("milestone_")
    number = "NN" if path.parent.name == "docs" else assignment[:2]

    intro, setup = cells[0], cells[1]
    title = rf"# Milestone {assignment[-1]}: \S" if milestone else rf"# Module {number}: \S"
    assert intro.cell_type == "markdown" and re.match(title, intro.source), f"title: {first_line(intro)!r}"
    assert nbgrader(intro).get("grade_id") == "intro" and nbgrader(intro).get("locked")
    assert setup.cell_type == "code" and nbgrader(setup).get("grade_id") == "setup" and nbgrader(setup).get("locked")
    assert f'prepare("{"NN_name" if number == "NN" else assignment}")' in setup.source
    if not milestone:
        assert re.match(r"#\| default_exp \w+$", first_line(setup)), "setup must start with `#| default_exp NAME`"
        assert cells[-1].cell_type == "markdown" and cells[-1].source.startswith("## What you built")

    ids = [nbgrader(c)["grade_id"] for c in cells if nbgrader(c).get("grade_id")]
    assert len(ids) == len(set(ids)), f"duplicate grade ids: {sorted({i for i in ids if ids.count(i) > 1})}"

    sections = [m for c in cells if c.cell_type == "markdown" for m in re.findall(r"^## (.*)$", c.source, flags=re.M)]
    numbered = [s for s in sections if re.match(r"\d+\. ", s)]
    assert [int(s.split(".")[0]) for s in numbered] == list(range(1, len(numbered) + 1)), sections
    assert len(sections) - len(numbered) <= 1, f"one unnumbered closing section at most: {sections}"

    for index, cell in enumerate(cells[1:], start=2):
        meta, where = nbgrader(cell), f"cell {index} ({nbgrader(cell).get('grade_id', 'no id')})"
        if cell.cell_type != "code":
            continue
        exported = first_line(cell).startswith("#| export")
        if exported:
            assert meta.get("solution") or (meta.get("locked") and meta.get("grade_id")), (
                f"{where}: an exported cell is a solution cell or a locked cell with a grade id"
            )
        if meta.get("solution"):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, where
        if meta.get("grade"):
            assert meta.get("locked") and meta.get("points", 0) > 0, f"{where}: tests are locked and worth points"
            assert not exported, f"{where}: a test cell is never exported"
            if milestone:
                assert meta["grade_id"] == judge_cell(assignment), f"{where}: the milestone's graded cell"
            else:
                assert meta["grade_id"].startswith("test-"), f"{where}: test ids start with 'test-'"
        if index > 2 and not exported:
            assert "raises-exception" in cell.metadata.get("tags", []), (
                f"{where}: tag it raises-exception so Run All goes on past it"
            )
