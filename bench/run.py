"""`make bench`: the gateway's overhead against going direct and against a relay that does nothing (the
floor), and LiteLLM's with BENCH_PEERS=litellm, for chat, Responses and Bedrock, with each server's CPU time
per call; the same for an upstream that bursts; its cold start against a bare FastAPI proxy (and what
importing aiohttp costs it); its memory under 200 streams; the dashboard's 10,000-call render; its package
size.

Run from the repository root: `.venv/bin/python -m bench.run`. Settings (environment):
  BENCH_REQUESTS     streams per target per concurrency level (default 200)
  BENCH_CONCURRENCY  comma-separated levels (default 1,10,50)
  BENCH_GAP_MS       the simulator's gap between content tokens (default 1: the first at once, the other 19
                     1 ms apart, as a model streams)
  BENCH_PAUSE_MS     each worker's pause between one call's end and its next call (default 2)
  BENCH_BURST_REQUESTS  streams per target per level in the extra "burst" scenario (all 20 tokens at once,
                     the request's `simulator: {gap_ms: 0}`), direct / floor / gw-asgi[-base] only (default 100;
                     0 skips)
  BENCH_COMPARE_TREE another checkout (with its own .venv): adds `gw-asgi-base`, its `uvicorn
                     switchboard.asgi:app`, to the same interleaved run and to the cold-start trials
  BENCH_PEERS        `litellm` to also measure LiteLLM's proxy (installed in a throwaway venv under /tmp)
  BENCH_COLD_TRIALS  fresh processes per app for cold start (default 7; 0 skips)
  BENCH_MEMORY_STREAMS  concurrent streams for the memory check (default 200; 0 skips)
  BENCH_DASHBOARD    0 skips the dashboard render (bench/dashboard_render.py, when present)
  BENCH_SAM_BUILD    an existing `sam build` directory to size; BENCH_SIZE=0 skips sizing
  BENCH_LITELLM_VENV where LiteLLM goes (reused when already there); BENCH_LITELLM_FRESH=1 reinstalls
  BENCH_VENV_BIN     the virtualenv's bin/ for this checkout's servers (default .venv/bin)
Exit status 0 whatever the numbers; non-zero only when the harness itself failed.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import coldstart, cpu, footprint
from bench.load import CONVERSE, RESPONSES, Target, interleaved, make_client, stream_once, warm_up
from bench.report import (
    DIRECT,
    DIRECT_BEDROCK,
    FLOOR,
    GATEWAY,
    GATEWAY_ASGI,
    GW_ASGI_BASE,
    GW_BEDROCK,
    GW_RESPONSES,
    LITELLM,
    format_report,
    load_level,
    raw_samples,
    write_json,
)
from bench.servers import (
    BENCH_AWS,
    GATEWAY_KEY,
    LITELLM_MASTER_KEY,
    LITELLM_MODEL,
    MAIN_TREE,
    ROOT,
    Fleet,
    HarnessError,
    Server,
    Tree,
    compare_tree,
    install_litellm,
    lambda_env,
    litellm_venv,
    spawn_deployed,
    start_floor,
    start_gateway,
    start_litellm,
    start_simulator,
)

TOKENS = 20
WARM_UP_REQUESTS = 20
BURST = {"gap_ms": 0}  # the request's `simulator` override: every token in one go
BURST_TARGETS = (DIRECT, FLOOR, GATEWAY_ASGI, GW_ASGI_BASE)
GATEWAY_MODEL = "openai/echo"  # the OpenAI-compatible path with a provider key, as a real deployment runs
BEDROCK_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # an inference profile id, `:` and all
SERVE_MEMORY = "gateway (switchboard serve, embedded moto ledger)"
LAMBDA_MEMORY = "gateway (uvicorn switchboard.asgi:app, as on Lambda)"


@dataclass(frozen=True)
class Config:
    requests: int
    concurrency: tuple[int, ...]
    peers: frozenset[str]
    cold_trials: int
    memory_streams: int
    gap_ms: float = 1.0
    pause_ms: float = 2.0
    burst_requests: int = 100
    compare_tree: str | None = None
    dashboard: bool = True

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        return cls(
            requests=int(env.get("BENCH_REQUESTS", "200")),
            concurrency=tuple(int(c) for c in env.get("BENCH_CONCURRENCY", "1,10,50").split(",") if c.strip()),
            peers=frozenset(p.strip().lower() for p in env.get("BENCH_PEERS", "").split(",") if p.strip()),
            cold_trials=int(env.get("BENCH_COLD_TRIALS", "7")),
            memory_streams=int(env.get("BENCH_MEMORY_STREAMS", "200")),
            gap_ms=float(env.get("BENCH_GAP_MS", "1")),
            pause_ms=float(env.get("BENCH_PAUSE_MS", "2")),
            burst_requests=int(env.get("BENCH_BURST_REQUESTS", "100")),
            compare_tree=env.get("BENCH_COMPARE_TREE") or None,
            dashboard=env.get("BENCH_DASHBOARD", "1") != "0",
        )

    def upstream(self) -> str:
        if not self.gap_ms:
            return f"the simulator bursts: all {TOKENS} tokens at once"
        return f"the simulator's first token at once, then {TOKENS - 1} more {self.gap_ms:g} ms apart"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def section(report: dict, name: str, measure: Callable[[], object]) -> None:
    """Run one part of the bench; a harness failure is noted and the other parts still run."""
    started = time.monotonic()
    log(f"{name} ...")
    try:
        report[name] = measure()
    except HarnessError as exc:
        report.setdefault("failures", []).append(f"{name}: {exc}")
        log(f"{name} FAILED: {exc}")
    report["meta"]["section_s"][name] = round(time.monotonic() - started, 1)


async def first_errors(targets: list[Target]) -> dict[str, str]:
    """One stream to each target; the error of each that failed (a route missing, a provider not there yet)."""
    errors = {}
    async with make_client(4) as client:
        for target in targets:
            for _attempt in range(3):  # a first call may pay for lazy set-up; three failures in a row are real
                sample = await stream_once(client, target)
                if sample.ok:
                    break
            else:
                errors[target.name] = sample.error or "failed"
    return errors


def bedrock_targets(simulator: Server, gateway: Server) -> tuple[list[Target], dict[str, str]]:
    """(direct-bedrock and gw-bedrock, or neither; why not): skipped, with the reason, when the simulator has no
    working ConverseStream route or the gateway cannot reach it through its Bedrock provider."""
    direct = Target(DIRECT_BEDROCK, simulator.url, BEDROCK_MODEL, api=CONVERSE, aws=BENCH_AWS, pid=simulator.pid)
    through = Target(GW_BEDROCK, gateway.url + "/v1", "bedrock/" + BEDROCK_MODEL, GATEWAY_KEY, pid=gateway.pid,
                     upstream_pid=simulator.pid)
    errors = asyncio.run(first_errors([direct]))
    if DIRECT_BEDROCK in errors:
        reason = f"the simulator has no working ConverseStream route ({errors[DIRECT_BEDROCK][:200]})"
        return [], {DIRECT_BEDROCK: reason, GW_BEDROCK: reason}
    errors = asyncio.run(first_errors([through]))
    if GW_BEDROCK in errors:
        reason = f"the gateway's Bedrock calls fail ({errors[GW_BEDROCK][:200]})"
        return [], {DIRECT_BEDROCK: "no gw-bedrock to compare with", GW_BEDROCK: reason}
    return [direct, through], {}


async def measure_load(targets: list[Target], config: Config, skipped: dict[str, str], *, requests: int,
                       upstream: str, simulator: dict | None = None) -> dict:
    """One interleaved run over every level; `simulator` overrides the upstream's pace per request."""
    async with make_client(max(config.concurrency) * len(targets) + 10) as client:
        warm_errors = await warm_up(client, targets, WARM_UP_REQUESTS)
        for name, errors in warm_errors.items():
            if len(errors) == WARM_UP_REQUESTS:
                raise HarnessError(f"every warm-up stream to {name} failed, e.g. {errors[0]}")
        levels, samples = {}, {}
        for concurrency in config.concurrency:
            results = await interleaved(client, targets, concurrency, requests, simulator=simulator,
                                        pause_s=config.pause_ms / 1000, cpu=cpu.group_cpu_s)
            levels[str(concurrency)] = load_level(results)
            samples[str(concurrency)] = raw_samples(results)
            log(f"  c={concurrency} done")
    return {"settings": {"requests_per_target": requests, "tokens": TOKENS, "upstream": upstream,
                         "simulator_override": simulator, "pause_ms": config.pause_ms,
                         "warm_up_per_target": WARM_UP_REQUESTS, "targets": [t.name for t in targets],
                         "cpu_tick_ms": 1000 / cpu.CLOCK_TICKS_PER_S},
            "levels": levels, "samples": samples, "skipped": skipped}


async def _memory_of(server: Server, streams: int) -> dict:
    target = Target(GATEWAY, server.url + "/v1", GATEWAY_MODEL, GATEWAY_KEY)
    async with make_client(streams + 10) as client:
        await warm_up(client, [target], WARM_UP_REQUESTS)
        return await footprint.rss_under_load(client, target, server.pid, streams)


def start_lambda_shaped(fleet: Fleet, simulator: Server, home: Path, tree: Tree = MAIN_TREE,
                        name: str = "gateway-asgi") -> Server:
    """The gateway as the web adapter runs it (handler/run.sh), with no ledger table: records go to the log."""
    server = spawn_deployed(fleet, name, lambda_env(home, simulator.url), tree)
    server.wait_ready("/health")
    return server


def measure_dashboard(scratch: Path) -> dict:
    """bench/dashboard_render.py's 10,000-call render, when that module is there and imports."""
    try:
        from bench import dashboard_render
    except ImportError as exc:
        return {"skipped": f"bench/dashboard_render.py is not importable ({exc})"}
    try:
        return dashboard_render.measure(scratch / "dashboard")
    except HarnessError as exc:
        return {"skipped": f"the render could not be measured: {exc}"}


def measure_memory(fleet: Fleet, gateway: Server, simulator: Server, home: Path, streams: int) -> dict:
    """Peak RSS under `streams` streams: the running `serve` gateway, and a fresh Lambda-shaped process."""
    memory = {SERVE_MEMORY: asyncio.run(_memory_of(gateway, streams))}
    lambda_like = start_lambda_shaped(fleet, simulator, home)
    try:
        memory[LAMBDA_MEMORY] = asyncio.run(_memory_of(lambda_like, streams))
    finally:
        fleet.stop(lambda_like)
    return memory


def litellm_target(fleet: Fleet, simulator: Server, home: Path, report: dict) -> Target:
    venv = litellm_venv()
    log(f"LiteLLM proxy from {venv} (installed there first if missing: about a minute) ...")
    command, install_s = install_litellm(venv, home / "litellm-install.log")
    report["meta"]["litellm_install_s"] = round(install_s, 1)
    log(f"LiteLLM installed in {install_s:.0f} s" if install_s else "LiteLLM: reusing the earlier install")
    server = start_litellm(fleet, command, simulator.url, home)
    log(f"LiteLLM proxy ready on {server.url}")
    return Target(LITELLM, server.url + "/v1", LITELLM_MODEL, LITELLM_MASTER_KEY, pid=server.pid,
                  upstream_pid=simulator.pid)


def new_report(config: Config) -> dict:
    return {"meta": {"started_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "cpus": os.cpu_count(),
                     "python": platform.python_version(), "machine": platform.machine(),
                     "config": {"requests": config.requests, "concurrency": list(config.concurrency),
                                "peers": sorted(config.peers), "cold_trials": config.cold_trials,
                                "memory_streams": config.memory_streams, "gap_ms": config.gap_ms,
                                "pause_ms": config.pause_ms, "burst_requests": config.burst_requests,
                                "compare_tree": config.compare_tree, "dashboard": config.dashboard},
                     "section_s": {},
                     "load_average_at_start": os.getloadavg()},
            "memory_streams": config.memory_streams, "memory_target_process": LAMBDA_MEMORY}


def chat_targets(simulator: Server, floor: Server, asgi: Server, base: Server | None, gateway: Server) -> list[Target]:
    """The chat targets, in table order; each names the process whose CPU it is charged with."""
    upstream = simulator.pid
    targets = [Target(DIRECT, simulator.url + "/v1", "echo", pid=simulator.pid),
               Target(FLOOR, floor.url + "/v1", "echo", pid=floor.pid, upstream_pid=upstream),
               Target(GATEWAY_ASGI, asgi.url + "/v1", GATEWAY_MODEL, GATEWAY_KEY, pid=asgi.pid, upstream_pid=upstream)]
    if base is not None:
        targets.append(Target(GW_ASGI_BASE, base.url + "/v1", GATEWAY_MODEL, GATEWAY_KEY, pid=base.pid,
                              upstream_pid=upstream))
    return targets + [
        Target(GW_RESPONSES, asgi.url + "/v1", GATEWAY_MODEL, GATEWAY_KEY, api=RESPONSES, pid=asgi.pid,
               upstream_pid=upstream),
        Target(GATEWAY, gateway.url + "/v1", GATEWAY_MODEL, GATEWAY_KEY, pid=gateway.pid, upstream_pid=upstream)]


def trees(config: Config) -> tuple[Tree | None, dict]:
    """The compare tree (or None) and, for the report, both trees' roots and revisions."""
    found = {"main": {"root": str(MAIN_TREE.root), "revision": MAIN_TREE.revision()}}
    if not config.compare_tree:
        return None, found
    other = compare_tree(config.compare_tree)
    found["compare (gw-asgi-base)"] = {"root": str(other.root), "revision": other.revision()}
    return other, found


def run(config: Config, scratch: Path) -> dict:
    report = new_report(config)
    base_tree, report["meta"]["trees"] = trees(config)
    with Fleet(scratch / "logs") as fleet:
        simulator = start_simulator(fleet, TOKENS, scratch, config.gap_ms)
        gateway = start_gateway(fleet, simulator.url, scratch)
        log(f"simulator on {simulator.url}, gateway on {gateway.url}")
        asgi = start_lambda_shaped(fleet, simulator, scratch)
        base = start_lambda_shaped(fleet, simulator, scratch, base_tree, "gateway-asgi-base") if base_tree else None
        floor = start_floor(fleet, simulator, scratch)
        targets = chat_targets(simulator, floor, asgi, base, gateway)
        bedrock, skipped = bedrock_targets(simulator, asgi)
        targets += bedrock
        for name, reason in skipped.items():
            log(f"{name} not measured: {reason}")
        if LITELLM in config.peers:
            try:
                targets.append(litellm_target(fleet, simulator, scratch, report))
            except HarnessError as exc:
                report.setdefault("failures", []).append(f"litellm: {exc}")
                log(f"LiteLLM not measured: {exc}")
        section(report, "load", lambda: asyncio.run(measure_load(
            targets, config, skipped, requests=config.requests, upstream=config.upstream())))
        if config.burst_requests > 0:
            burst_targets = [t for t in targets if t.name in BURST_TARGETS]
            section(report, "burst", lambda: asyncio.run(measure_load(
                burst_targets, config, {}, requests=config.burst_requests, simulator=BURST,
                upstream=f"BURST: all {TOKENS} tokens at once (the request's simulator.gap_ms = 0)")))
        if config.cold_trials > 0:
            section(report, "coldstart", lambda: {
                **coldstart.summarize_trials(coldstart.run_trials(fleet, scratch, simulator.url, GATEWAY_MODEL,
                                                                  config.cold_trials, base_tree)),
                "aiohttp_import": coldstart.import_times(scratch, simulator.url)})
        if config.memory_streams > 0:
            section(report, "memory", lambda: measure_memory(fleet, gateway, simulator, scratch,
                                                             config.memory_streams))
    if config.dashboard:
        section(report, "dashboard", lambda: measure_dashboard(scratch))
    else:
        report["dashboard"] = {"skipped": "BENCH_DASHBOARD=0"}
    section(report, "size", lambda: footprint.measure_size(scratch))
    return report


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    config = Config.from_env()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    scratch = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    started = time.monotonic()
    try:
        report = run(config, scratch)
    except KeyboardInterrupt:
        log("interrupted; every server this run started has been stopped")
        shutil.rmtree(scratch, ignore_errors=True)
        return 130
    except HarnessError as exc:
        log(f"harness failed: {exc}")
        log(f"server logs kept in {scratch / 'logs'}")
        return 1
    report["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    report["meta"]["load_average_at_end"] = os.getloadavg()
    print(format_report(report), flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_json(report, ROOT / "bench" / "results", stamp)
    log(f"wrote {path.relative_to(ROOT)} and bench/results/latest.json")
    if report.get("failures"):
        log(f"server logs kept in {scratch / 'logs'}")
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
