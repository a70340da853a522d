"""Headless Chromium for the dashboard tests: the system's browser (Debian's `chromium`), driven by Playwright.

No browser is ever downloaded. Where Chromium is missing the browser tests are skipped, and the run's
summary says so in capitals: CI installs Chromium first (.ci/run), so a skip there is never silent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots; git-ignored
SKIP_REASON = (f"Chromium not found at {CHROMIUM}: the dashboard's browser tests did not run "
               "(apt-get install chromium, or set SWITCHBOARD_CHROMIUM)")
_skipped: list[str] = []


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        return SKIP_REASON
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]'): the browser tests did not run"
    return None


@pytest.fixture(scope="package")
def chromium(tmp_path_factory) -> Iterator[object]:
    """One browser for the browser tests, with a fresh profile of its own (no state from any earlier run).

    Package-scoped: Playwright's sync API keeps an event loop running on this thread until it stops, and
    every later test that runs asyncio would find it."""
    reason = browser_missing()
    if reason:
        _skipped.append(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1800}, service_workers="block")
        yield context
        context.close()


@pytest.fixture
def page(chromium):
    """A new tab: its own sessionStorage, so no test inherits another's key."""
    tab = chromium.new_page()
    yield tab
    tab.close()


def screenshot(page, name: str) -> Path:
    """Save the page as a test artefact: tests/browser/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _skipped:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{_skipped[0]}. The dashboard was NOT tested in a browser.", red=True,
                                    bold=True)
