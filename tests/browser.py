"""Browser tests: a real JupyterLab server and chromium driven by Playwright, as a student or teacher uses them.

Plain functions; the `page` fixture is in tests/conftest.py. Named browser.py, not jupyterlab.py: tests/ is
on sys.path while tests run, and a tests/jupyterlab.py would shadow the jupyterlab package.
"""

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tito.demo import free_port

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


class JupyterLab:
    def __init__(self, port, token, log):
        self.port, self.token, self.log = port, token, log

    def url(self, path=""):
        """http://127.0.0.1:<port>/<path>?token=<token>, e.g. url("lab/tree/01_tensor/01_tensor.ipynb")."""
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def login(self, page):
        """Log the browser in. Needed before formgrader pages: nbgrader sets the login cookie of a page opened
        with ?token= for that page's folder only, so its API calls would be sent to the login page."""
        page.goto(self.url("api/status"))

    def log_tail(self, lines=60):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def jupyterlab(root, token=None, timeout=60):
    """Run `jupyter lab` in root (its own config and settings, no news, no update checks, notebooks open
    with a kernel and render every cell) until the block ends. Yields a JupyterLab; on an error in the
    block, the server's log is printed, so pytest shows it with the failure, and kept in a file."""
    token = token or secrets.token_hex(16)
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="tinytorch-lab-"))
    config, settings = home / "config", home / "settings"
    (config / "labconfig").mkdir(parents=True)
    # the announcements plugin asks, in a toast over the notebook, whether to fetch news
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    # no kernel-choice dialog; windowing off, so every cell is in the DOM (not only the visible ones)
    tracker.write_text(json.dumps({"autoStartDefaultKernel": True, "windowingMode": "none"}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    env.pop("MPLBACKEND", None)  # the tests' Agg backend would hide every figure a student sees inline
    # the server (nbgrader_config.py imports tito) and its kernels use this checkout's tito, not the venv's
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    log = home / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1"]
    command += [f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    command += [f"--ServerApp.root_dir={root}", "--expose-app-in-browser", "--LabApp.news_url=None"]
    command += ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = JupyterLab(port, token, log)
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    passed = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url("api/status"), timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jupyter lab not up after {timeout} s:\n{server.log_tail()}") from None
                time.sleep(0.2)
        yield server
        passed = True
    except BaseException:
        print(f"--- jupyter lab log ({log}) ---\n{server.log_tail(200)}")
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if passed:
            shutil.rmtree(home, ignore_errors=True)  # after a failure, the log its message names stays


def screenshot(target, name, full_page=True):
    """Save a page (full_page=False: what the window shows) or a Locator's element to
    test-artifacts/screenshots/<name>.png; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if hasattr(target, "goto"):
        target.screenshot(path=str(path), full_page=full_page)
    else:
        target.screenshot(path=str(path))
    return path


# The open notebook at path, found among the main area's widgets (the current widget may be a launcher or a dialog).
_NOTEBOOK = """path => Array.from(window.jupyterapp?.shell.widgets('main') ?? [])
    .find(w => w.context?.path === path && w.content?.model)"""

# What "finished" means to a student: the kernel idle, no cell queued or running, every widget drawn.
_SETTLED = f"""path => {{
    const nb = ({_NOTEBOOK})(path);
    return !!nb && nb.sessionContext.session?.kernel?.status === 'idle' && window.__tinytorchRun !== 'running'
        && ![...nb.node.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('[*]'))
        && ![...nb.node.querySelectorAll('.jp-OutputArea')].some(o => o.textContent.includes('Loading widget...'));
}}"""

_RUN = f"""([path, until]) => {{
    const nb = ({_NOTEBOOK})(path);
    let command = 'notebook:run-all-cells';
    if (until !== null) {{
        const index = nb.content.widgets.findIndex(cell => cell.model.sharedModel.getSource().includes(until));
        if (index < 0) return `no cell contains ${{JSON.stringify(until)}}`;
        nb.content.activeCellIndex = index;
        command = 'notebook:run-all-above';  // every cell above the active one, not the active one
    }}
    window.__tinytorchRun = 'running';
    // widgetId: this notebook, even if another one has the focus; resolves when the last cell has run
    window.jupyterapp.commands.execute(command, {{widgetId: nb.id}}).then(
        () => {{ window.__tinytorchRun = 'done'; }}, e => {{ window.__tinytorchRun = `failed: ${{e}}`; }});
    return null;
}}"""


def run_notebook(page, server, path, until=None, timeout=300):
    """Open path (relative to the server's root) in JupyterLab as a student would, wait for its kernel,
    and run all cells, or, with until, every cell above the first cell whose source contains until.
    Returns when the kernel is idle, no prompt shows [*] and no "Loading widget..." is left. As in
    JupyterLab, the run stops at the first cell that raises, unless the cell is tagged raises-exception
    (nbgrader's test cells are), so check error_outputs. A notebook already open keeps its kernel.
    On a timeout, raises naming a screenshot, the notebook's prompts and the server's log."""
    page.goto(server.url(f"lab/tree/{path}"))
    try:
        page.wait_for_function(_SETTLED, arg=path, timeout=120_000, polling=200)  # loaded, kernel started
        problem = page.evaluate(_RUN, [path, until])
        assert problem is None, problem
        page.wait_for_function(_SETTLED, arg=path, timeout=timeout * 1000, polling=500)
    except Exception as e:
        shot = screenshot(page, f"timeout-{Path(path).stem}")
        prompts = page.evaluate(
            f"p => [...(({_NOTEBOOK})(p)?.node.querySelectorAll('.jp-InputPrompt') ?? [])].map(e => e.textContent)",
            path,
        )
        raise AssertionError(
            f"{path} did not finish: {e}\nscreenshot: {shot}\nprompts: {prompts}\nserver log: {server.log}"
        ) from e
    state = page.evaluate("window.__tinytorchRun")
    assert state == "done", f"{path}: running the cells failed: {state}"


def error_outputs(page, path):
    """The text of every error and stderr output of the open notebook at path, as shown (JupyterLab renders
    tracebacks with the stderr type). Other notebooks stay in the page, hidden, so the query is scoped."""
    return page.evaluate(
        f"""path => [...({_NOTEBOOK})(path).node.querySelectorAll(
            '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')].map(e => e.textContent)""",
        path,
    )
