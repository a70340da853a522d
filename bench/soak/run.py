"""One soak run: start the rig, drive the waves, gather the figures, check the records, stop everything.

The simulator and the gateway run as processes of their own (bench.servers' Fleet, which stops them on
every exit path); moto and the DynamoDB fault proxy run in this process. Memory and CPU are read from
/proc with bench.footprint's and bench.cpu's readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu import parse_proc_stat, ticks_to_s
from bench.footprint import RssSampler, read_status
from bench.servers import HOST, VENV_BIN, Fleet, HarnessError, Server, base_env, free_port, gateway_env
from bench.soak.client import Outcome, SoakError, drive
from bench.soak.dynamodb_proxy import DynamoFaultProxy
from bench.soak.plan import KIND_BY_NAME
from bench.soak.records import check_records, scan_gateway_log
from bench.soak.report import SoakReport, percentiles, summarize_outcomes

WRITE_BUDGET_MS = 300


def start_simulator(fleet: Fleet, home: Path, first_token_ms: float, tokens: int, gap_ms: float) -> Server:
    """The simulated upstream with a first-token delay: bench.servers' own starts at once (it clocks TTFT),
    while the soak wants streams that overlap as a voice agent's do."""
    port = free_port()
    argv = [str(VENV_BIN / "switchboard"), "simulator", "--host", HOST, "--port", str(port),
            "--first-token-ms", f"{first_token_ms:g}", "--tokens", str(tokens), "--gap-ms", f"{gap_ms:g}"]
    return fleet.spawn("simulator", argv, base_env(home), port)


def start_gateway(fleet: Fleet, home: Path, simulator_url: str, aws_endpoint: str, stack_env: dict[str, str],
                  write_budget_ms: int = WRITE_BUDGET_MS) -> Server:
    """`switchboard serve` on the harness's moto, through the fault proxy at `aws_endpoint`, logging at INFO
    so every fallback record and late write is in its log."""
    port = free_port()
    env = gateway_env(home, simulator_url) | {
        "SWITCHBOARD_TABLE": stack_env["SWITCHBOARD_TABLE"],
        "SWITCHBOARD_PROVIDER_KEYS_SECRET": stack_env["SWITCHBOARD_PROVIDER_KEYS_SECRET"],
        "SWITCHBOARD_GATEWAY_KEYS_SECRET": stack_env["SWITCHBOARD_GATEWAY_KEYS_SECRET"],
        "SWITCHBOARD_AWS_ENDPOINT_URL": aws_endpoint,
        "SWITCHBOARD_LEDGER_WRITE_BUDGET_MS": str(write_budget_ms),
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    argv = [str(VENV_BIN / "switchboard"), "serve", "--host", HOST, "--port", str(port), "--no-simulator"]
    return fleet.spawn("gateway", argv, env, port)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of one process so far (not its group: the harness leads none)."""
    try:
        return ticks_to_s(parse_proc_stat(Path(f"/proc/{pid}/stat").read_text()).ticks)
    except (OSError, ValueError, IndexError):
        return None


def status_kb(pid: int, name: str) -> int | None:
    """VmRSS or VmHWM of a process, in kB; None once it has gone."""
    try:
        return read_status(pid).get(name)
    except OSError:
        return None


@dataclass
class Rig:
    """What a run starts, held so that `stop` ends all of it whatever happened on the way."""

    fleet: Fleet
    simulator: Server | None = None
    gateway: Server | None = None
    stack: Any = None  # switchboard.ops.local_stack.LocalStack: moto, in this process's care
    proxy: DynamoFaultProxy | None = None
    sampling: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # the gateway's RssSampler

    def gateway_alive(self) -> bool:
        return self.gateway is not None and self.gateway.process.poll() is None

    def stop(self) -> None:
        self.sampling.close()
        self.fleet.stop_all()
        if self.proxy is not None:
            self.proxy.stop()
        if self.stack is not None:
            self.stack.server.stop()


def run_soak(streams: int = 250, waves: int = 8, *, seed: int = 7, first_token_ms: float = 50, tokens: int = 20,
             gap_ms: float = 10, dynamodb_fault_rate: float = 0.10, dynamodb_delay_share: float = 0.5,
             dynamodb_delay_s: float = 1.5, write_budget_ms: int = WRITE_BUDGET_MS,
             memory_threshold_mb: float = 20.0, settle_s: float = 0.5, records_wait_s: float = 2.0,
             total_timeout_s: float = 600.0, request_timeout_s: float = 60.0, index_lookups: int | None = 400,
             work_dir: Path | None = None, keep_logs: bool | None = None,
             progress: Callable[[str], None] | None = None) -> SoakReport:
    """Run the soak and return its figures; `report.failures` lists what broke a promise (empty: passed).

    Every server it starts is stopped before it returns, whatever happened. Logs stay in `work_dir`
    (a fresh temporary directory unless given; removed on success unless `keep_logs`).
    """
    if tokens <= dict(KIND_BY_NAME["cut_mid_stream"].simulator)["cut_after"]:
        raise ValueError("tokens must exceed the cut_after of the cut_mid_stream kind")
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    own_dir = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="switchboard-soak-")) if work_dir is None else work_dir
    home = work_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    task_id = f"soak-{run_id}"
    report = SoakReport(run_id, streams, waves, memory_threshold_mb=memory_threshold_mb, work_dir=str(work_dir))
    rig = Rig(Fleet(work_dir))
    alive_checked = False
    try:
        say("starting the simulator, moto, the DynamoDB fault proxy and the gateway")
        rig.simulator = start_simulator(rig.fleet, home, first_token_ms, tokens, gap_ms)
        rig.simulator.wait_ready(timeout=30, poll_s=0.05)
        rig.stack = _local_stack()
        info = rig.stack.start(write_state=False)
        rig.proxy = DynamoFaultProxy(info.endpoint, dynamodb_fault_rate, dynamodb_delay_share, dynamodb_delay_s,
                                     seed).start()
        gateway = rig.gateway = start_gateway(rig.fleet, home, rig.simulator.url, rig.proxy.url, info.env(),
                                              write_budget_ms)
        gateway.wait_ready(timeout=30, poll_s=0.05)
        sampler = rig.sampling.enter_context(RssSampler(gateway.pid))

        def after_wave(wave: int) -> None:
            report.rss_after_wave_mb.append(round((status_kb(gateway.pid, "VmRSS") or 0) / 1024, 1))
            say(f"wave {wave + 1}/{waves} done; gateway RSS {report.rss_after_wave_mb[-1]:.1f} MB")

        remaining = total_timeout_s - (time.perf_counter() - started) - 30  # leave time to check and stop
        try:
            outcomes, report.wave_seconds, concurrency = asyncio.run(asyncio.wait_for(
                drive(gateway.url, task_id, waves, streams, seed, settle_s, after_wave, request_timeout_s),
                max(remaining, 1.0)))
        except TimeoutError:
            raise SoakError(f"the waves did not finish within the run's {total_timeout_s:.0f} s") from None
        summarize_outcomes(report, outcomes, concurrency)
        say("waiting for the last records")
        time.sleep(records_wait_s)
        rig.proxy.wait_quiet(quiet_s=2.0, timeout=90)  # the gateway's ledger has nothing left to write
        time.sleep(0.5)  # a write that just landed late logs its "stored late" line right after its reply
        report.gateway_alive, alive_checked = rig.gateway_alive(), True
        gather_figures(report, rig, sampler)
        say("checking one record per request")
        check_all_records(report, rig, info, outcomes, task_id, index_lookups)
        report.judge(streams * waves)
    except HarnessError as exc:
        report.failures.append(str(exc))
    finally:
        if not alive_checked:
            report.gateway_alive = rig.gateway_alive()
        rig.stop()
        report.duration_s = round(time.perf_counter() - started, 1)
    if own_dir and report.ok and not keep_logs:
        shutil.rmtree(work_dir, ignore_errors=True)
        report.work_dir += " (removed: the run passed)"
    return report


def gather_figures(report: SoakReport, rig: Rig, sampler: RssSampler) -> None:
    """CPU, memory and the DynamoDB faults the proxy injected, once the waves are over."""
    assert rig.gateway is not None and rig.simulator is not None and rig.proxy is not None
    report.cpu_seconds = {name: round(cpu_seconds(pid) or 0.0, 1) for name, pid in (
        ("gateway", rig.gateway.pid), ("simulator", rig.simulator.pid), ("harness", os.getpid()))}
    peak_kb = max(sampler.peak_kb, status_kb(rig.gateway.pid, "VmHWM") or 0)
    report.peak_rss_mb = round(peak_kb / 1024, 1)
    if report.rss_after_wave_mb:
        report.rss_growth_mb = round(report.rss_after_wave_mb[-1] - report.rss_after_wave_mb[0], 1)
    counts = rig.proxy.counts
    report.dynamodb_requests = counts["dynamodb"]
    report.dynamodb_faults = {"http_500": counts["dynamodb_error"], "delay": counts["dynamodb_delay"],
                              "down_for_record": counts["dynamodb_error_sticky"]}
    report.dynamodb_pass_ms = percentiles(rig.proxy.forward_ms)


def check_all_records(report: SoakReport, rig: Rig, info: Any, outcomes: list[Outcome], task_id: str,
                      index_lookups: int | None) -> None:
    """The gateway's log and the table, against the requests sent: one record each."""
    from switchboard.ledger.store import CallStore
    from switchboard.ledger.writer import FALLBACK_MESSAGE, STORED_LATE

    assert rig.gateway is not None and rig.proxy is not None
    checking = time.perf_counter()
    log = scan_gateway_log(rig.gateway.log_path, FALLBACK_MESSAGE, STORED_LATE)
    report.fallback_reasons = dict(log.reasons)
    report.gateway_error_lines = dict(log.errors)
    dynamodb = _dynamodb_client(info.endpoint)
    check_records(report, outcomes, CallStore(dynamodb, info.table), dynamodb, info.table, task_id, log,
                  dict(rig.proxy.put_fault), index_lookups)
    report.check_seconds = round(time.perf_counter() - checking, 1)


def _local_stack() -> Any:
    from switchboard.ops.local_stack import LocalStack

    return LocalStack()


def _dynamodb_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")
