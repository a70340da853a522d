"""Cold start: fresh processes of the bare FastAPI app and of the gateway, taking turns.

Each trial spawns `python -m uvicorn <app>` as handler/run.sh does, polls GET /health every 2 ms from
the moment before spawning (what the Lambda Web Adapter waits for), and for the gateway then sends a
first streamed chat at once and a second, warm one, each on a new connection. Once, apart from the trials,
`python -X importtime -c "import switchboard.asgi"` shows what aiohttp costs to import and that it is paid
there, at start-up (uvicorn imports the app before /health can answer), not on a call's path.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.load import Sample, Target, make_client, stream_once
from bench.servers import GATEWAY_KEY, ROOT, VENV_BIN, Fleet, HarnessError, Server, base_env, lambda_env, spawn_uvicorn
from bench.stats import median, package_import_ms

BARE_APP = "bench.bare_app:app"
GATEWAY_APP = "switchboard.asgi:app"
IMPORT_STATEMENT = "import switchboard.asgi"


@dataclass
class Trial:
    app: str
    health_s: float
    first_token_since_start_s: float | None = None  # spawn to the first chat's first content token
    first_ttft_s: float | None = None
    warm_ttft_s: float | None = None


async def _chat(target: Target) -> Sample:
    async with make_client(2) as client:  # a new connection, as the first chat after a cold start has
        return await stream_once(client, target)


def _checked(sample: Sample, what: str, server: Server) -> Sample:
    if not sample.ok:
        raise HarnessError(f"{what} through a fresh gateway failed: {sample.error}; {server.log_tail()}")
    return sample


def bare_trial(fleet: Fleet, home: Path) -> Trial:
    server = spawn_uvicorn(fleet, "bare-app", BARE_APP, base_env(home))
    try:
        return Trial("bare", server.wait_ready("/health"))
    finally:
        fleet.stop(server)


def gateway_trial(fleet: Fleet, home: Path, simulator_url: str, model: str) -> Trial:
    server = spawn_uvicorn(fleet, "gateway-asgi", GATEWAY_APP, lambda_env(home, simulator_url))
    try:
        health_s = server.wait_ready("/health")
        target = Target("gateway", server.url + "/v1", model, GATEWAY_KEY)
        first = _checked(asyncio.run(_chat(target)), "the first chat", server)
        warm = _checked(asyncio.run(_chat(target)), "the warm chat", server)
        return Trial("gateway", health_s, first.started + first.ttft_s - server.started_at, first.ttft_s,
                     warm.ttft_s)
    finally:
        fleet.stop(server)


def run_trials(fleet: Fleet, home: Path, simulator_url: str, model: str, trials: int) -> list[Trial]:
    """`trials` of each app, alternating which goes first so neither always runs on a just-busied machine."""
    results: list[Trial] = []
    for round_number in range(trials):
        runs = [lambda: bare_trial(fleet, home), lambda: gateway_trial(fleet, home, simulator_url, model)]
        for run in runs if round_number % 2 == 0 else reversed(runs):
            results.append(run())
    return results


def summarize_trials(trials: list[Trial]) -> dict:
    bare = [t.health_s * 1000 for t in trials if t.app == "bare"]
    gateway = [t for t in trials if t.app == "gateway"]
    health = [t.health_s * 1000 for t in gateway]
    first_minus_warm = [(t.first_ttft_s - t.warm_ttft_s) * 1000 for t in gateway]
    return {
        "trials_per_app": len(bare),
        "bare_health_ms": {"median": median(bare), "all": bare},
        "gateway_health_ms": {"median": median(health), "all": health},
        "health_ratio": median(health) / median(bare),
        "gateway_start_to_first_token_ms": {"median": median([t.first_token_since_start_s * 1000 for t in gateway])},
        "first_chat_ttft_ms": {"median": median([t.first_ttft_s * 1000 for t in gateway])},
        "warm_chat_ttft_ms": {"median": median([t.warm_ttft_s * 1000 for t in gateway])},
        "first_minus_warm_ms": {"median": median(first_minus_warm), "all": first_minus_warm},
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
