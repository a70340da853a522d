"""Cold start: fresh processes of a bare FastAPI proxy and of the gateway (and of the compare tree's), in turns.

Each trial spawns `python -m uvicorn <app>` as handler/run.sh does, polls GET /health every 2 ms from the
moment before spawning (what the Lambda Web Adapter waits for), then at once sends a first streamed chat and
afterwards a second, warm one, each on a new connection, with the same client code for every app. Both
clients are built before the spawn, so their set-up is not charged to the app. The bare app
(bench/bare_app.py) is the simplest FastAPI proxy of the simulator, so "spawn to the first token" compares
like with like. Once, apart from the trials, `python -X importtime -c "import switchboard.asgi"` shows what
aiohttp costs to import and that it is paid there, at start-up (uvicorn imports the app before /health can
answer), not on a call's path.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.load import Sample, Target, make_client, stream_once
from bench.servers import (
    GATEWAY_KEY,
    MAIN_TREE,
    ROOT,
    VENV_BIN,
    Fleet,
    HarnessError,
    Server,
    Tree,
    lambda_env,
    spawn_deployed,
    spawn_uvicorn,
)
from bench.stats import median, median_ratio, package_import_ms

BARE_APP = "bench.bare_app:app"
GATEWAY_APP = "switchboard.asgi:app"
IMPORT_STATEMENT = "import switchboard.asgi"
BARE, GATEWAY, GATEWAY_BASE = "bare", "gateway", "gateway-base"


@dataclass(frozen=True)
class App:
    name: str
    module: str
    tree: Tree = MAIN_TREE


@dataclass
class Trial:
    app: str
    health_s: float
    first_token_since_start_s: float  # spawn to the first chat's first content token
    first_ttft_s: float
    warm_ttft_s: float


def apps(compare: Tree | None = None) -> list[App]:
    found = [App(BARE, BARE_APP), App(GATEWAY, GATEWAY_APP)]
    return found + ([App(GATEWAY_BASE, GATEWAY_APP, compare)] if compare else [])


def _checked(sample: Sample, what: str, server: Server) -> Sample:
    if not sample.ok:
        raise HarnessError(f"{what} through a fresh {server.name} failed: {sample.error}; {server.log_tail()}")
    return sample


async def _trial(fleet: Fleet, home: Path, simulator_url: str, model: str, app: App) -> Trial:
    # Every app gets the Lambda-shaped environment; the bare proxy reads OPENAI_BASE_URL / OPENAI_API_KEY.
    async with make_client(2) as first_client, make_client(2) as warm_client:
        env = lambda_env(home, simulator_url)
        server = (spawn_uvicorn(fleet, f"cold-{app.name}", app.module, env, app.tree) if app.name == BARE
                  else spawn_deployed(fleet, f"cold-{app.name}", env, app.tree))
        try:
            health_s = server.wait_ready("/health")
            target = Target(app.name, server.url + "/v1", model, GATEWAY_KEY)
            first = _checked(await stream_once(first_client, target), "the first chat", server)
            warm = _checked(await stream_once(warm_client, target), "the warm chat", server)
        finally:
            fleet.stop(server)
    return Trial(app.name, health_s, first.started + first.ttft_s - server.started_at, first.ttft_s, warm.ttft_s)


def run_trials(fleet: Fleet, home: Path, simulator_url: str, model: str, trials: int,
               compare: Tree | None = None) -> list[Trial]:
    """`trials` of each app, each round starting with the next app, so none always runs on a just-busied
    machine."""
    results: list[Trial] = []
    order = apps(compare)
    for round_number in range(trials):
        start = round_number % len(order)
        for app in order[start:] + order[:start]:
            results.append(asyncio.run(_trial(fleet, home, simulator_url, model, app)))
    return results


def _spread(values: list[float]) -> dict:
    return {"median": median(values), "all": values}


def summarize_app(trials: list[Trial]) -> dict:
    return {
        "health_ms": _spread([t.health_s * 1000 for t in trials]),
        "start_to_first_token_ms": _spread([t.first_token_since_start_s * 1000 for t in trials]),
        "first_chat_ttft_ms": _spread([t.first_ttft_s * 1000 for t in trials]),
        "warm_chat_ttft_ms": _spread([t.warm_ttft_s * 1000 for t in trials]),
        "first_minus_warm_ms": _spread([(t.first_ttft_s - t.warm_ttft_s) * 1000 for t in trials]),
    }


def summarize_trials(trials: list[Trial]) -> dict:
    """Per app, medians and every trial; per gateway, its ratios to the bare proxy. The gateway's own figures
    are also kept under the keys earlier runs used."""
    by_app = {name: [t for t in trials if t.app == name] for name in dict.fromkeys(t.app for t in trials)}
    summary = {name: summarize_app(group) for name, group in by_app.items()}
    bare = summary.get(BARE)
    ratios = {}
    for name, app in summary.items():
        if name == BARE or bare is None:
            continue
        ratios[name] = {
            "health": median_ratio(app["health_ms"]["all"], bare["health_ms"]["all"]),
            "start_to_first_token": median_ratio(app["start_to_first_token_ms"]["all"],
                                                 bare["start_to_first_token_ms"]["all"]),
        }
    gateway = summary.get(GATEWAY, {})
    return {
        "trials_per_app": len(by_app.get(BARE, [])),
        "apps": summary,
        "ratios": ratios,
        "bare_health_ms": (bare or {}).get("health_ms"),
        "gateway_health_ms": gateway.get("health_ms"),
        "health_ratio": ratios.get(GATEWAY, {}).get("health"),
        "start_to_first_token_ratio": ratios.get(GATEWAY, {}).get("start_to_first_token"),
        "gateway_start_to_first_token_ms": gateway.get("start_to_first_token_ms"),
        "first_chat_ttft_ms": gateway.get("first_chat_ttft_ms"),
        "warm_chat_ttft_ms": gateway.get("warm_chat_ttft_ms"),
        "first_minus_warm_ms": gateway.get("first_minus_warm_ms"),
    }


def import_times(home: Path, simulator_url: str) -> dict:
    """aiohttp's share of importing the gateway app, in the gateway's environment, from one -X importtime run."""
    argv = [str(VENV_BIN / "python"), "-X", "importtime", "-c", IMPORT_STATEMENT]
    try:
        result = subprocess.run(argv, cwd=ROOT, env=lambda_env(home, simulator_url), capture_output=True, text=True,
                                timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"statement": IMPORT_STATEMENT, "error": f"{type(exc).__name__}: {exc}"}
    if result.returncode != 0:
        return {"statement": IMPORT_STATEMENT, "error": f"exit {result.returncode}: {result.stderr[-300:]}"}
    return {"statement": IMPORT_STATEMENT, "aiohttp_ms": package_import_ms(result.stderr, "aiohttp"),
            "total_ms": package_import_ms(result.stderr, "switchboard")}
