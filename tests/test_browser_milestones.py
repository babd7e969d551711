"""The milestone demos in a real browser, as a student uses them: JupyterLab, chromium, mouse and files.

A student workspace holds the reference solutions of every module. Each milestone notebook is opened
and run in JupyterLab up to its milestone check (the check trains again in a fresh process; the
grader and tests/test_autograde.py cover it). Milestones 2 and 3 train for less in this copy (one
epoch of 5,000 images, 60 steps), as a student trying things out might: the demos need a trained
model, not a good one.
Screenshots go to test-artifacts/screenshots/.
"""

import math
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from browser import JupyterLab, error_outputs, jupyterlab, run_notebook, screenshot

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

CHECKS = {  # the first line of each milestone's check cell: everything above it runs
    1: "from milestones.foundation.test_lenet_milestone import check",
    2: "from milestones.revolution.test_alexnet_milestone import check",
    3: "from milestones.generation.test_chatgpt_milestone import check",
}
SHORTER = {
    2: [
        ("epochs = 3", "epochs = 1"),
        ("ArrayDataset(X_train[:-held_out], y_train[:-held_out])", "ArrayDataset(X_train[:5000], y_train[:5000])"),
    ],
    3: [("steps = 600", "steps = 60"), ("warmup_steps=50", "warmup_steps=10")],
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("student")
    for folder in sorted((REPO / "source").iterdir()):
        if folder.is_dir() and folder.name[:2].isdigit() or folder.name.startswith("milestone_"):
            shutil.copytree(folder, root / folder.name)
    for number, edits in SHORTER.items():
        path = root / f"milestone_{number}" / f"milestone_{number}.ipynb"
        nb = nbformat.read(str(path), as_version=4)
        for old, new in edits:
            training = next(c for c in nb.cells if old in c.source)
            training.source = training.source.replace(old, new)
        nbformat.write(nb, str(path))
    return root


@pytest.fixture(scope="module")
def server(workspace):
    with jupyterlab(workspace) as lab:
        yield lab


def no_errors(page, path):
    errors = [e for e in error_outputs(page, path) if "Traceback" in e or "Error" in e]
    assert not errors, "\n".join(errors)


def draw(page, canvas, points):
    """One stroke with the mouse through points given in canvas pixels (0..280)."""
    box = canvas.bounding_box()
    at = [(box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


ONE = [(150, 50), (142, 140), (135, 230)]
ZERO = [(140 + 60 * math.sin(t / 24 * 2 * math.pi), 140 - 95 * math.cos(t / 24 * 2 * math.pi)) for t in range(26)]
SEVEN = [(70, 60), (210, 60), (165, 150), (120, 240)]


def read_digit(page, demo, points, expected):
    """Draw a digit in the demo, then wait for the network's answer; returns the answer's text."""
    demo.get_by_role("button", name="Clear").click()
    page.wait_for_function("el => el.textContent.includes('Draw a digit')", arg=demo.element_handle())
    draw(page, demo.locator("canvas.tinytorch-digit-canvas"), points)
    guess = demo.locator(".tinytorch-digit-guess")
    guess.wait_for(timeout=30_000)
    assert guess.inner_text() == f"Your network reads: {expected}", guess.inner_text()
    bars = demo.inner_text()
    assert len(re.findall(r"\d+%", bars)) == 10, bars  # ten probabilities
    return guess


def cell(page, path, marker):
    """The notebook's first cell whose source contains marker (found in the model: the editor draws only
    the lines in view, and other notebooks' cells may be in the page too)."""
    panel, index = page.evaluate(
        """([path, marker]) => {
            const nb = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.context?.path === path);
            return [nb.id, nb.content.widgets.findIndex(c => c.model.sharedModel.getSource().includes(marker))];
        }""",
        [path, marker],
    )
    assert index >= 0, f"no cell of {path} contains {marker!r}"
    return page.locator(f"[id='{panel}'] .jp-Cell").nth(index)


def demo_of(page, path, marker):
    """The widget that the cell whose source contains marker shows."""
    return cell(page, path, marker).locator(".jp-OutputArea-output").last


def test_draw_a_digit_in_milestone_1(page, server):
    path = "milestone_1/milestone_1.ipynb"
    run_notebook(page, server, path, until=CHECKS[1])
    no_errors(page, path)
    demo = demo_of(page, path, "digit_demo(tinytorch, model)")
    demo.scroll_into_view_if_needed()
    read_digit(page, demo, ONE, 1)
    screenshot(demo, "milestone-1-drawn-one")
    read_digit(page, demo, ZERO, 0)
    screenshot(demo, "milestone-1-drawn-zero")


def test_tito_milestone_demo_1_brings_the_saved_model_back(page, server, workspace):
    """After the notebook trained and saved its model (the test above), `tito milestone demo 1` serves
    a demo notebook that loads it: no training."""
    assert (workspace / ".tito" / "checkpoints" / "milestone_1.npz").exists(), "run with the test above"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tito", "--workspace", str(workspace), "milestone", "demo", "1", "--no-browser"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # this checkout's tito and milestones, in the kernel too
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        url = re.search(r"http://\S+", "".join(lines)).group(0)
        port, token = re.search(r":(\d+)/.*token=(\w+)", url).groups()
        demo_server = JupyterLab(int(port), token, workspace / ".tito" / "demo" / "jupyterlab.log")
        run_notebook(page, demo_server, "milestone_1_demo.ipynb")
        no_errors(page, "milestone_1_demo.ipynb")
        demo = demo_of(page, "milestone_1_demo.ipynb", "digit_demo(tinytorch, model)")
        read_digit(page, demo, SEVEN, 7)
        screenshot(page, "milestone-1-tito-demo", full_page=False)
    finally:
        proc.terminate()
        proc.wait(20)
    with pytest.raises(ConnectionRefusedError):  # stopping tito stopped its JupyterLab too
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()


def test_classify_test_photos_and_an_upload_in_milestone_2(page, server, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect

    from tito.datasets import CIFAR10_CLASSES, load_cifar10

    path = "milestone_2/milestone_2.ipynb"
    run_notebook(page, server, path, until=CHECKS[2], timeout=900)
    no_errors(page, path)
    mistakes = cell(page, path, "plot_confusion(matrix")
    assert mistakes.locator("img").count() == 2, "the confusion matrix and the gallery of mistakes (matplotlib)"
    screenshot(mistakes, "milestone-2-confusion-and-mistakes")

    demo = demo_of(page, path, "image_demo(tinytorch, model, X_test, y_test)")
    demo.scroll_into_view_if_needed()
    top3 = demo.locator(".tinytorch-top3")
    first = top3.inner_text()
    demo.get_by_role("button", name="Another test photo").click()
    expect(top3).not_to_have_text(first)  # the widget redraws the guesses: locators, not element handles
    assert len(top3.locator("li").all()) == 3 and "test photo" in top3.inner_text()

    _, (X_test, _) = load_cifar10()
    photo = tmp_path / "my-photo.png"  # a test photo, 5x larger and with a border: not 32 x 32, not square
    big = Image.fromarray(X_test[7]).resize((160, 160), Image.Resampling.BICUBIC)
    framed = Image.new("RGB", (240, 160), (255, 255, 255))
    framed.paste(big, (40, 0))
    framed.save(photo)
    demo.locator("input.tinytorch-picture-upload").set_input_files(str(photo))
    expect(top3).to_contain_text("your picture my-photo.png", timeout=30_000)
    guesses = top3.locator("li").all_inner_texts()
    assert len(guesses) == 3 and all(re.fullmatch(r"\w+: \d+%", g) for g in guesses), guesses
    assert {g.split(":")[0] for g in guesses} <= set(CIFAR10_CLASSES)
    screenshot(demo, "milestone-2-uploaded-photo")


def test_generate_a_function_in_milestone_3(page, server):
    path = "milestone_3/milestone_3.ipynb"
    run_notebook(page, server, path, until=CHECKS[3], timeout=900)
    no_errors(page, path)
    demo = demo_of(page, path, "generation_demo(tinytorch, model, tokenizer)")
    demo.scroll_into_view_if_needed()
    demo.get_by_role("button", name="Generate").click()
    code = demo.locator(".highlight, pre").first
    code.wait_for(timeout=60_000)  # the first characters, while it still writes
    mark = demo.locator(".tinytorch-parse-mark")
    mark.wait_for(timeout=300_000)
    assert code.inner_text().startswith("def "), code.inner_text()
    assert re.match(r"[✅❌] ", mark.inner_text()), mark.inner_text()
    screenshot(demo, "milestone-3-generated-function")
