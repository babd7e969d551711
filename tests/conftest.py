"""Fixtures of the browser tests (helpers in tests/browser.py; the repository's conftest.py sets up Jupyter)."""

import os
import shutil
import socket
import tempfile

import pytest
from browser import screenshot

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[_FAILED] = True  # read by the page fixture's teardown, which runs after the call's report
    return report


@pytest.fixture(scope="session")
def chromium():
    """Chromium's path. Without chromium or playwright, a browser test is skipped, except in CI (CI set),
    where it fails. Session-scoped, so it is checked before a test module's expensive fixtures."""
    path = os.environ.get("TINYTORCH_CHROMIUM") or shutil.which("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if not path:
        why = "browser tests need playwright and chromium (apt install chromium, or set TINYTORCH_CHROMIUM)"
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
    return path


@pytest.fixture
def page(chromium, request):
    """A chromium page (1400×1000) in a browser of its own; on a failure, saves <test>-failure.png."""
    from playwright.sync_api import sync_playwright

    # started here, after the module's fixtures: nothing else may run an event loop while Playwright's is alive
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        if request.node.stash.get(_FAILED, False):
            screenshot(page, f"{request.node.name}-failure")
        browser.close()


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server (Debian's packages) with an empty database; its SQLAlchemy URL.
    Skipped without PostgreSQL, except in CI (CI set), where it fails."""
    import glob
    import subprocess

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("needs PostgreSQL (apt install postgresql)")
    bin_dir = os.path.dirname(found[-1])
    folder = tempfile.mkdtemp(prefix="tinytorch-postgres-")  # pytest's tmp folders are closed to other users
    as_owner = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: its own user owns the cluster
        shutil.chown(folder, "postgres", "postgres")
        # runuser lives in /usr/sbin, which is not on a plain user's PATH
        runuser = shutil.which("runuser", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
        as_owner = [runuser, "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*argv):
        subprocess.run([*as_owner, *argv], check=True, capture_output=True, text=True)

    run(f"{bin_dir}/initdb", "-D", f"{folder}/data", "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-k {folder} -p {port} -c listen_addresses='' -c fsync=off"
    run(f"{bin_dir}/pg_ctl", "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "-o", options, "start")
    try:
        run(f"{bin_dir}/psql", "-h", str(folder), "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE gradebook")
        yield f"postgresql+psycopg2://postgres@/gradebook?host={folder}&port={port}"
    finally:
        run(f"{bin_dir}/pg_ctl", "-D", f"{folder}/data", "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)
