"""The operator dashboard over 10,000 calls: how long the page takes to draw them, in headless Chromium.

What tests/browser/test_dashboard.py's ten-thousand-call test does, timed here rather than bounded there
(a timed test fails on a busy machine): 10,000 synthetic calls written to a table of their own in the
embedded AWS emulation (moto) through the store's own item code (tests/browser/seeding.py), a gateway on a
free loopback port, /dashboard opened in Debian's Chromium through Playwright with the tests' flags, the admin
key signed in, then the filter applied and the page refreshed twice, as a user would. Per load:
`render_ms`, the page's own time from its first request to its figures drawn (window.dashboardRenderMs),
and `click_to_render_ms`, from the click to the page ready. The target: a median under 1,000 ms from the click.

    .venv/bin/python -m bench.dashboard_render      # prints the figures as JSON

No browser is downloaded and no request leaves the machine; everything started is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

CALLS = 10_000


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def measure(scratch: Path) -> dict:
    """The figures, or {"skipped": why} where Chromium or Playwright is missing. `scratch` holds the
    browser's throwaway profile."""
    from tests.browser.conftest import browser_missing

    reason = browser_missing()
    if reason:
        return {"skipped": reason}
    from tests.browser.test_dashboard import seed_many_calls, timed_loads

    scratch.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        gateway, table_env = _serve(stack)
        log(f"dashboard: seeding {CALLS:,} calls")
        environment = seed_many_calls(table_env, CALLS)
        log("dashboard: three loads in headless Chromium")
        timings = timed_loads(_browser(stack, scratch).new_page(), gateway, environment)
    in_page = [round(ms, 1) for ms, _ in timings]
    clicked = [round(ms, 1) for _, ms in timings]
    return {"calls": CALLS, "render_ms": {"median": statistics.median(in_page), "all": in_page},
            "click_to_render_ms": {"median": statistics.median(clicked), "all": clicked}}


def _serve(stack: contextlib.ExitStack):
    """The AWS emulation, a simulator and a gateway recording into a fresh table, as the browser tests run
    them; each stopped by `stack`. Returns the gateway's server and the table's settings."""
    from switchboard.config.settings import Settings
    from switchboard.core.runtime import build_gateway
    from switchboard.http.app import create_app
    from switchboard.http.serving import BackgroundServer
    from switchboard.ops.local_stack import LocalStack
    from switchboard.simulator import Script, SimulatorApp
    from tests.browser.seeding import fresh_table
    from tests.conftest import gateway_env

    aws = LocalStack()
    info = aws.start(write_state=False)
    stack.callback(aws.server.stop)
    # Nothing here calls a model; the simulator only keeps every provider URL on loopback.
    simulator = BackgroundServer(SimulatorApp(Script())).start()
    stack.callback(simulator.stop)
    table_env = stack.enter_context(fresh_table(info.env()))
    settings = Settings.from_env(gateway_env(simulator, **table_env))
    gateway = BackgroundServer(create_app(settings, build_gateway(settings))).start()
    stack.callback(gateway.stop)
    return gateway, table_env


def _browser(stack: contextlib.ExitStack, scratch: Path):
    """Chromium as tests/browser/conftest.py launches it, with a fresh profile under `scratch`."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS

    profile = stack.enter_context(tempfile.TemporaryDirectory(prefix="chromium-profile-", dir=scratch))
    playwright = stack.enter_context(sync_playwright())
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1400, "height": 1800}, service_workers="block")
    stack.callback(context.close)
    return context


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-dashboard-") as scratch:
        print(json.dumps(measure(Path(scratch)), indent=2))
