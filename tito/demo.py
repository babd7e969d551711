"""`tito milestone demo N`: a milestone's interactive demo in JupyterLab, with the model the student
already trained (the checkpoint its notebook saved), so nothing trains again.

The demo notebook is generated into <workspace>/.tito/demo/ (never collected with a submission)
and JupyterLab serves only that folder.
"""

import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import nbformat

# The cells after the loading cell: (markdown, code) per milestone; `tinytorch` and `model` exist.
WIDGETS = {
    1: (
        "Draw a digit with the mouse, a pen or a finger. Your network reads it each time you lift the pen.",
        "from milestones.foundation.demo_lenet_milestone import digit_demo\n\ndigit_demo(tinytorch, model)",
    ),
    2: (
        "Shuffle through test photographs, or upload a picture of your own: your CNN's three best guesses.",
        "from milestones.revolution.demo_alexnet_milestone import image_demo\n"
        "from tito.datasets import load_cifar10\n\n"
        "_, (X_test, y_test) = load_cifar10()\n"
        "image_demo(tinytorch, model, X_test, y_test)",
    ),
    3: (
        "Give your GPT the start of a function and watch it write the rest.",
        "from milestones.generation.demo_chatgpt_milestone import generation_demo, trained_tokenizer\n\n"
        "generation_demo(tinytorch, model, trained_tokenizer(tinytorch))",
    ),
}


def demo_notebook(number, name, workspace):
    """Write the demo notebook for milestone `number`; return its path."""
    from tito.workspace import package_dir

    folder = package_dir(workspace) / ".tito" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    text, code = WIDGETS[number]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# Milestone {number}: {name}, the demo\n\n"
            f"Your model as you trained it in `milestone_{number}.ipynb`, built by your `build_model` cell "
            "with your tinytorch and loaded from the checkpoint that notebook saved. Run all cells "
            "(*Run ▸ Run All Cells*). This notebook is rewritten each time you run "
            f"`tito milestone demo {number}`."
        ),
        nbformat.v4.new_code_cell(
            "from milestones.checkpoint import trained_model\n\n"
            f"tinytorch, model = trained_model({number}, {str(Path(workspace).resolve())!r})"
        ),
        nbformat.v4.new_markdown_cell(text),
        nbformat.v4.new_code_cell(code),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"demo-{i}"
    path = folder / f"milestone_{number}_demo.ipynb"
    nbformat.write(nb, str(path))
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_in_jupyterlab(notebook, open_browser=True):
    """Serve the notebook's folder with JupyterLab on 127.0.0.1 until Ctrl-C; print the URL."""
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}"
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--ip=127.0.0.1",
        "--allow-root",  # containers and CI machines run as root
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebook.parent}",
        "--ServerApp.open_browser=" + ("True" if open_browser else "False"),
        f"--LabApp.default_url=/lab/tree/{notebook.name}",
        "--LabApp.news_url=None",  # no "get notified about Jupyter news?" over the demo
        "--expose-app-in-browser",  # window.jupyterapp: lets scripts (and our browser tests) drive the page
    ]
    log = notebook.parent / "jupyterlab.log"
    for stop in [signal.SIGTERM, signal.SIGHUP]:  # kill, or a closed terminal: stop JupyterLab too, as Ctrl-C does
        signal.signal(stop, _as_ctrl_c)
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        if _wait_until_up(server, f"http://127.0.0.1:{port}/api/status?token={token}"):
            print(f"The demo is at\n    {url}\n(JupyterLab keeps running until you press Ctrl-C here.)", flush=True)
        code = server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait(10)
        return 0
    if code:
        print(f"JupyterLab stopped with an error; the end of its log ({log}):")
        print("".join(log.read_text().splitlines(keepends=True)[-15:]))
    return code


def _as_ctrl_c(signum, frame):
    raise KeyboardInterrupt


def _wait_until_up(server, status_url, timeout=90):
    """True once JupyterLab answers (then the URL works); False if it exited first."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(status_url, timeout=5):
                return True
        except OSError:
            time.sleep(0.3)
    return server.poll() is None
