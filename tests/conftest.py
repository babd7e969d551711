"""Fixtures of the browser tests (helpers in tests/browser.py; the repository's conftest.py sets up Jupyter)."""

import os
import shutil

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
