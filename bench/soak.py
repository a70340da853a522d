"""Soak: hundreds of concurrent streams through the gateway while the upstream and DynamoDB misbehave.

    .venv/bin/python -m bench.soak [--streams 250] [--waves 8] [--json PATH]

Everything runs on loopback and is stopped at the end, also on errors: the simulator and the gateway
in processes of their own, and in this process a moto server (the call table and both secrets) behind
a fault proxy that fails or stalls a share of the DynamoDB requests. Each wave sends `streams`
streaming requests at once; a seeded plan gives each one a fault (upstream 5xx with and without a
fallback, a connection cut mid-stream, a slow first token past its deadline, a client that hangs up).

Then it checks what the design promises: every request ends in a well-formed response or error, every
request leaves exactly one call record (in the table, or in the gateway's log when the write failed),
the gateway is still up, and its memory stays flat from the first wave to the last. Exit status 1 if
not; the figures go to stdout and, with --json, to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(os.environ.get("BENCH_VENV_BIN") or ROOT / ".venv" / "bin")
HOST = "127.0.0.1"
GATEWAY_KEY = "sb-soak-key-fake"
OPENAI_KEY = "sk-soak-fake"
WRITE_BUDGET_MS = 300
DYNAMODB_ERROR_BODY = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}'
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}
MAX_EXAMPLES = 10


class SoakError(RuntimeError):
    """The harness could not do its job (a server would not start, the run overran its time)."""


# -- the fault plan -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix: what it asks of the simulator and what a correct ending looks like."""

    name: str
    share: float
    model: str = "openai/ok"
    headers: tuple[tuple[str, str], ...] = ()
    simulator: tuple[tuple[str, int], ...] = ()
    upstream_fault: bool = False
    expect: str = "done"  # done | json_error | error_event | disconnect
    api: str = "chat"  # chat | responses: which door the request takes


KINDS = (
    Kind("normal", 0.60),
    Kind("upstream_5xx_fallback", 0.10, "openai/fail-503", (("x-switchboard-fallbacks", "openai/ok"),),
         upstream_fault=True),
    Kind("upstream_5xx", 0.05, "openai/fail-503", upstream_fault=True, expect="json_error"),
    Kind("cut_mid_stream", 0.10, simulator=(("cut_after", 5),), upstream_fault=True, expect="error_event"),
    Kind("slow_first_token", 0.10, "openai/slow-1500", (("x-switchboard-first-token-timeout-ms", "400"),
                                                        ("x-switchboard-fallbacks", "openai/ok")),
         upstream_fault=True),
    Kind("client_disconnect", 0.05, expect="disconnect"),
    Kind("responses_normal", 0.05, api="responses"),
    Kind("responses_5xx_fallback", 0.02, "openai/fail-503", (("x-switchboard-fallbacks", "openai/ok"),),
         upstream_fault=True, api="responses"),
    Kind("responses_cut_mid_stream", 0.02, simulator=(("cut_after", 5),), upstream_fault=True,
         expect="error_event", api="responses"),
    Kind("responses_client_disconnect", 0.01, expect="disconnect", api="responses"),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}


def plan_wave(streams: int, rng: random.Random) -> list[Kind]:
    """Each kind's share of the wave (at least one of each fault), the rest normal, in a seeded order."""
    planned: list[Kind] = []
    for kind in KINDS[1:]:
        planned += [kind] * max(1, round(kind.share * streams))
    planned += [KINDS[0]] * max(0, streams - len(planned))
    planned = planned[:streams]
    rng.shuffle(planned)
    return planned


# -- one request ----------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    wave: int
    index: int
    kind: str
    request_id: str | None = None
    status: int | None = None
    ending: str = "none"  # done | error_event | json_error | disconnected | broken
    events: int = 0
    seconds: float = 0.0
    problem: str | None = None  # why the ending is not well-formed; None when it is

    @property
    def well_formed(self) -> bool:
        return self.problem is None


class Concurrency:
    """How many requests are in flight, and how many streams are open (headers in, body not finished)."""

    def __init__(self) -> None:
        self.requests = self.streams = self.peak_requests = self.peak_streams = 0

    @contextlib.contextmanager
    def track(self, attribute: str):
        setattr(self, attribute, getattr(self, attribute) + 1)
        peak = "peak_" + attribute
        setattr(self, peak, max(getattr(self, peak), getattr(self, attribute)))
        try:
            yield
        finally:
            setattr(self, attribute, getattr(self, attribute) - 1)


async def send_one(client: httpx.AsyncClient, url: str, task_id: str, kind: Kind, outcome: Outcome,
                   concurrency: Concurrency) -> Outcome:
    prompt = f"soak request {outcome.wave}.{outcome.index}"
    body: dict = {"model": kind.model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    if kind.api == "responses":
        body = {"model": kind.model, "stream": True, "input": prompt}
        url = url.replace("/chat/completions", "/responses")
    if kind.simulator:
        body["simulator"] = dict(kind.simulator)
    headers = {"authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": task_id, **dict(kind.headers)}
    started = time.perf_counter()
    try:
        with concurrency.track("requests"):
            async with client.stream("POST", url, json=body, headers=headers) as response:
                outcome.status = response.status_code
                outcome.request_id = response.headers.get("x-request-id")
                if response.status_code == 200:
                    with concurrency.track("streams"):
                        outcome.problem = await read_stream(response, outcome, kind.expect == "disconnect")
                else:
                    outcome.problem = check_error_body(await response.aread(), response.headers, outcome)
    except (httpx.HTTPError, OSError) as exc:
        outcome.ending = "broken"
        outcome.problem = f"{type(exc).__name__}: {exc}"[:300]
    outcome.seconds = time.perf_counter() - started
    if outcome.problem is None and not outcome.request_id:
        outcome.problem = "no x-request-id header"
    return outcome


async def read_stream(response: httpx.Response, outcome: Outcome, hang_up: bool) -> str | None:
    """None if every SSE event parses and the stream ends with [DONE] or an error event; else the problem.

    With `hang_up`, stop after the first content chunk (the caller then closes the connection)."""
    buffer = b""
    last: str | None = None
    async for data in response.aiter_bytes():
        buffer += data
        while (end := buffer.find(b"\n\n")) >= 0:
            block, buffer = buffer[:end], buffer[end + 2:]
            if last == "done" or (last == "error_event" and block != b"data: [DONE]"):
                return f"an event after the stream's end: {block[:120]!r}"
            if last == "error_event":  # the error event, then [DONE]: a chat stream's end after a failure
                outcome.events += 1
                continue
            last, problem = parse_event(block)
            outcome.events += 1
            if problem:
                return problem
            if hang_up and last == "content":
                outcome.ending = "disconnected"
                return None
    if buffer.strip():
        return f"stream ended inside an event: {buffer[:120]!r}"
    if last not in ("done", "error_event"):
        outcome.ending = "broken"
        return f"stream ended without [DONE] or an error event (last event: {last})"
    outcome.ending = last
    return None


def parse_event(block: bytes) -> tuple[str, str | None]:
    """(what the event is: done | error_event | content | chunk, the problem with it or None)."""
    if block.startswith(b"event: "):
        return parse_responses_event(block)
    if not block.startswith(b"data: ") or b"\n" in block:
        return "bad", f"not a single data line: {block[:120]!r}"
    payload = block[6:]
    if payload == b"[DONE]":
        return "done", None
    try:
        event = json.loads(payload)
    except ValueError:
        return "bad", f"event is not JSON: {payload[:120]!r}"
    if not isinstance(event, dict):
        return "bad", f"event is not a JSON object: {payload[:120]!r}"
    if "error" in event:
        error = event["error"]
        ok = isinstance(error, dict) and isinstance(error.get("message"), str)
        return "error_event", None if ok else f"error event without error.message: {payload[:120]!r}"
    choices = event.get("choices") or [{}]
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    return ("content" if isinstance(delta, dict) and delta.get("content") else "chunk"), None


RESPONSES_ENDINGS = {"response.completed": "done", "response.incomplete": "done", "response.failed": "error_event"}


def parse_responses_event(block: bytes) -> tuple[str, str | None]:
    """A Responses API event: `event: <type>` and one `data:` line whose type matches."""
    name_line, _, data_line = block.partition(b"\n")
    if not data_line.startswith(b"data: ") or b"\n" in data_line:
        return "bad", f"not an event line and one data line: {block[:120]!r}"
    try:
        event = json.loads(data_line[6:])
    except ValueError:
        return "bad", f"event is not JSON: {data_line[:120]!r}"
    name = name_line[7:].decode("latin-1")
    if not isinstance(event, dict) or event.get("type") != name:
        return "bad", f"event type does not match its name: {block[:120]!r}"
    if name == "response.failed" and not (event.get("response") or {}).get("error"):
        return "bad", "response.failed without an error"
    return RESPONSES_ENDINGS.get(name, "content" if name == "response.output_text.delta" else "chunk"), None


def check_error_body(raw: bytes, headers: httpx.Headers, outcome: Outcome) -> str | None:
    outcome.ending = "json_error"
    if "json" not in headers.get("content-type", ""):
        return f"status {outcome.status} with content-type {headers.get('content-type')!r}"
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return f"status {outcome.status} with a body that is not a JSON object: {raw[:120]!r}"
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return f"status {outcome.status} without error.message: {raw[:120]!r}"
    return None


# -- the DynamoDB fault proxy ---------------------------------------------------------------------------------

class DynamoFaultProxy:
    """A loopback HTTP proxy in front of moto that fails or stalls a share of the DynamoDB requests.

    A fault is an HTTP 500 with DynamoDB's error body, or a stall of `delay_s` (past the ledger's write
    budget) before the request goes through. Secrets Manager and everything else pass untouched.
    """

    def __init__(self, target: str, fault_rate: float = 0.10, delay_share: float = 0.5, delay_s: float = 1.5,
                 seed: int = 0) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or HOST, parts.port or 80)
        self.fault_rate, self.delay_share, self.delay_s = fault_rate, delay_share, delay_s
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.put_fault: dict[str, str] = {}  # request id in a PutItem -> what the proxy did to it
        self.forward_ms: list[float] = []  # DynamoDB requests passed through: moto's time, seen from here
        self.inflight = 0
        self.server = http.server.ThreadingHTTPServer((HOST, 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="dynamodb-fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"

    def start(self) -> DynamoFaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def decide(self, amz_target: str) -> str:
        """pass | error | delay, counted; only DynamoDB requests are ever faulted."""
        with self.lock:
            if not amz_target.startswith("DynamoDB_"):
                self.counts["other"] += 1
                return "pass"
            self.counts["dynamodb"] += 1
            roll = self.rng.random()
            fault = "pass"
            if roll < self.fault_rate * (1 - self.delay_share):
                fault = "error"
            elif roll < self.fault_rate:
                fault = "delay"
            self.counts[f"dynamodb_{fault}"] += 1
            return fault

    def sticky(self, body: bytes) -> bool:
        """Every write of about one record in fifty fails on every attempt, so some must reach the log."""
        try:
            request_id = json.loads(body)["Item"]["request_id"]["S"]
        except (ValueError, KeyError, TypeError):
            return False
        if zlib.crc32(request_id.encode()) % 50:
            return False
        with self.lock:
            self.counts["dynamodb_error_sticky"] += 1
        return True

    def note_put(self, body: bytes, fault: str) -> None:
        """Which call record a PutItem carried, so a duplicate can be traced to the fault that caused it."""
        try:
            request_id = json.loads(body)["Item"]["request_id"]["S"]
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            previous = self.put_fault.get(request_id)
            self.put_fault[request_id] = fault if previous is None else f"{previous},{fault}"  # botocore retries

    def wait_quiet(self, quiet_s: float, timeout: float) -> bool:
        """Until no request has been in flight or arrived for `quiet_s` (late writes have all landed)."""
        deadline = time.monotonic() + timeout
        last_total, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = sum(self.counts.values())
            if total != last_total or self.inflight:
                last_total, quiet_since = total, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return True
            time.sleep(0.1)
        return False

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.inflight

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects
            upstream: http.client.HTTPConnection | None = None

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                with proxy.lock:
                    proxy.inflight += 1
                try:
                    self._answer()
                finally:
                    with proxy.lock:
                        proxy.inflight -= 1

            do_GET = do_PUT = do_DELETE = do_POST  # noqa: N815

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                target = self.headers.get("x-amz-target", "")
                fault = proxy.decide(target)
                if target.endswith(".PutItem"):
                    if proxy.sticky(body):  # DynamoDB "down" for this record: every attempt fails
                        fault = "error"
                    proxy.note_put(body, fault)
                if fault == "error":
                    self._reply(500, [("Content-Type", "application/x-amz-json-1.0"),
                                      ("x-amzn-RequestId", uuid.uuid4().hex)], DYNAMODB_ERROR_BODY)
                    return
                if fault == "delay":
                    time.sleep(proxy.delay_s)
                forwarded = time.perf_counter()
                status, headers, data = self._forward(body)
                if fault == "pass" and target.startswith("DynamoDB_"):
                    proxy.forward_ms.append((time.perf_counter() - forwarded) * 1000)
                self._reply(status, headers, data)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                for attempt in range(2):  # a kept-alive connection moto closed meanwhile: once more, fresh
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(*proxy.target, timeout=30)
                    try:
                        self.upstream.request(self.command, self.path, body, headers)
                        response = self.upstream.getresponse()
                        data = response.read()
                        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                        return response.status, kept, data
                    except (OSError, http.client.HTTPException):
                        self.upstream.close()
                        self.upstream = None
                        if attempt:
                            raise
                raise AssertionError("unreachable")

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def finish(self) -> None:
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

            def log_message(self, *args) -> None:  # quiet: the counts say what happened
                pass

        return Handler


# -- processes ------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Process:
    """A server in its own process group (Ctrl-C reaches only the harness), output to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, port: int) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        start_new_session=True)
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise SoakError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=1.0, trust_env=False).status_code == 200:
                    return
            time.sleep(0.05)
        raise SoakError(f"{self.name} not healthy within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.exit_code = self.process.returncode
        self.log.close()


def clean_env() -> dict[str, str]:
    """This environment without any provider, gateway or AWS setting that could leak into the servers."""
    drop = ("SWITCHBOARD_", "AWS_", "POWERTOOLS_")
    return {k: v for k, v in os.environ.items()
            if not k.startswith(drop) and not k.endswith(("_API_KEY", "_BASE_URL"))}


def start_simulator(work_dir: Path, first_token_ms: float, tokens: int, gap_ms: float) -> Process:
    port = free_port()
    argv = [str(VENV_BIN / "switchboard"), "simulator", "--port", str(port), "--first-token-ms", str(first_token_ms),
            "--tokens", str(tokens), "--gap-ms", str(gap_ms)]
    return Process("simulator", argv, clean_env() | {"PYTHONUNBUFFERED": "1"}, work_dir / "simulator.log", port)


def start_gateway(work_dir: Path, simulator_url: str, aws_endpoint: str, stack_env: dict[str, str],
                  write_budget_ms: int = WRITE_BUDGET_MS) -> Process:
    port = free_port()
    env = clean_env() | {
        "SWITCHBOARD_API_KEYS": GATEWAY_KEY,
        "SIMULATOR_BASE_URL": simulator_url + "/v1",
        "OPENAI_BASE_URL": simulator_url + "/v1",
        "OPENAI_API_KEY": OPENAI_KEY,
        "SWITCHBOARD_TABLE": stack_env["SWITCHBOARD_TABLE"],
        "SWITCHBOARD_PROVIDER_KEYS_SECRET": stack_env["SWITCHBOARD_PROVIDER_KEYS_SECRET"],
        "SWITCHBOARD_GATEWAY_KEYS_SECRET": stack_env["SWITCHBOARD_GATEWAY_KEYS_SECRET"],
        "SWITCHBOARD_AWS_ENDPOINT_URL": aws_endpoint,
        "SWITCHBOARD_LEDGER_WRITE_BUDGET_MS": str(write_budget_ms),
        "SWITCHBOARD_HOME": str(work_dir / "home"),
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [str(VENV_BIN / "switchboard"), "serve", "--port", str(port), "--no-simulator"]
    return Process("gateway", argv, env, work_dir / "gateway.log", port)


# -- memory ---------------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def proc_status_kb(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """VmRSS of one process every `interval` seconds on a thread of its own; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.samples = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            rss = proc_status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.peak_kb = max(self.peak_kb, rss)
                self.samples += 1

    def start(self) -> RssSampler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)


# -- the report -----------------------------------------------------------------------------------------------

@dataclass
class SoakReport:
    run_id: str
    streams: int
    waves: int
    requests_sent: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    endings: dict[str, int] = field(default_factory=dict)
    upstream_faults: int = 0  # requests planned with a 5xx, a cut or a slow first token
    client_disconnects: int = 0
    dynamodb_requests: int = 0
    dynamodb_faults: dict[str, int] = field(default_factory=dict)  # http_500, delay
    well_formed: int = 0
    malformed: int = 0
    malformed_examples: list[dict] = field(default_factory=list)
    without_request_id: int = 0  # no x-request-id came back, so no record can be looked up (malformed)
    records_in_table: int = 0
    records_in_log: int = 0
    records_missing: int = 0
    records_duplicated: int = 0
    duplicates_by_shape: dict[str, int] = field(default_factory=dict)
    duplicates_by_cause: dict[str, int] = field(default_factory=dict)  # "<fallback reason>, PutItem <proxy>"
    dynamodb_pass_ms: dict[str, float] = field(default_factory=dict)  # p50/p95/max of unfaulted requests
    seconds_by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    check_seconds: float = 0.0
    record_examples: list[dict] = field(default_factory=list)  # missing and duplicated, with evidence
    record_problems_by_kind: dict[str, int] = field(default_factory=dict)  # "<shape> <request kind>" -> count
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    index_lookups: int = 0  # CallStore.call look-ups made
    index_disagreements: int = 0  # CallStore.call and the scan disagree about an id
    orphan_records: int = 0  # records of this run for request ids no response carried
    record_mismatches: int = 0  # record status disagrees with what the client saw
    mismatch_examples: list[dict] = field(default_factory=list)
    gateway_alive: bool = False
    gateway_error_lines: dict[str, int] = field(default_factory=dict)
    peak_concurrent_requests: int = 0
    peak_concurrent_streams: int = 0
    rss_after_wave_mb: list[float] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # gateway, simulator, harness (client+moto+proxy)
    peak_rss_mb: float = 0.0
    rss_growth_mb: float = 0.0
    memory_threshold_mb: float = 20.0
    wave_seconds: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    work_dir: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def dynamodb_faults_total(self) -> int:
        return sum(self.dynamodb_faults.values())

    def judge(self, expected_requests: int) -> None:
        checks = [
            (self.requests_sent == expected_requests,
             f"{self.requests_sent} of {expected_requests} requests were sent"),
            (self.malformed == 0, f"{self.malformed} requests ended malformed"),
            (self.records_missing == 0, f"{self.records_missing} requests have no call record"),
            (self.records_duplicated == 0, f"{self.records_duplicated} requests have more than one call record"),
            (self.gateway_alive, "the gateway process died"),
            (self.index_disagreements == 0,
             f"CallStore.call and a table scan disagree about {self.index_disagreements} request ids"),
            (self.rss_growth_mb <= self.memory_threshold_mb,
             f"gateway RSS grew {self.rss_growth_mb:.1f} MB from the first wave to the last "
             f"(threshold {self.memory_threshold_mb:.0f} MB)"),
        ]
        self.failures += [message for passed, message in checks if not passed]

    def to_json(self) -> dict:
        return asdict(self) | {"ok": self.ok, "dynamodb_faults_total": self.dynamodb_faults_total}

    def summary(self) -> str:
        kinds = ", ".join(f"{name} {count}" for name, count in self.by_kind.items())
        rss = self.rss_after_wave_mb
        rows = [
            ("requests sent", f"{self.requests_sent} ({self.waves} waves x {self.streams} concurrent streams)"),
            ("  by kind", kinds),
            ("peak concurrency", f"{self.peak_concurrent_requests} requests in flight, "
                                 f"{self.peak_concurrent_streams} streams open"),
            ("faults injected upstream", f"{self.upstream_faults} (+ {self.client_disconnects} client disconnects)"),
            ("faults injected in DynamoDB", f"{self.dynamodb_faults_total} of {self.dynamodb_requests} requests "
                                            f"({self.dynamodb_faults.get('http_500', 0)} HTTP 500, "
                                            f"{self.dynamodb_faults.get('delay', 0)} stalled, "
                                            f"{self.dynamodb_faults.get('down_for_record', 0)} writes of records "
                                            "DynamoDB refused every time)"),
            ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))),
            ("endings", ", ".join(f"{k}: {v}" for k, v in sorted(self.endings.items()))),
            ("  by kind", "; ".join(f"{k}: " + ", ".join(f"{e} {n}" for e, n in sorted(v.items()))
                                    for k, v in self.statuses_by_kind.items())),
            ("well-formed endings", f"{self.well_formed} of {self.requests_sent} (malformed {self.malformed})"),
            ("records in table", str(self.records_in_table)),
            ("records in fallback log", f"{self.records_in_log}  reasons: "
                                        + (", ".join(f"{k} {v}" for k, v in self.fallback_reasons.items()) or "-")),
            ("records missing", str(self.records_missing)),
            ("records duplicated", f"{self.records_duplicated}  "
                                   + (", ".join(f"{k} {v}" for k, v in self.duplicates_by_shape.items()) or "")),
            ("  duplicates by cause", ", ".join(f"[{k}] {v}" for k, v in self.duplicates_by_cause.items()) or "-"),
            ("  missing/duplicated by kind", ", ".join(f"{k} {v}" for k, v in self.record_problems_by_kind.items())
             or "-"),
            ("orphan records", str(self.orphan_records)),
            ("CallStore.call look-ups", f"{self.index_lookups} (disagreeing with the scan: "
                                        f"{self.index_disagreements})"),
            ("record/response mismatches", str(self.record_mismatches)),
            ("gateway alive at the end", "yes" if self.gateway_alive else "NO"),
            ("gateway error log lines", ", ".join(f"{k} {v}" for k, v in self.gateway_error_lines.items()) or "0"),
            ("peak RSS (gateway)", f"{self.peak_rss_mb:.1f} MB"),
            ("RSS after wave 1 / last", f"{rss[0]:.1f} MB / {rss[-1]:.1f} MB (growth {self.rss_growth_mb:+.1f} MB)"
             if rss else "-"),
            ("RSS after each wave", " ".join(f"{v:.1f}" for v in rss)),
            ("wave durations", " ".join(f"{s:.2f}s" for s in self.wave_seconds)),
            ("request ms by kind", "; ".join(f"{k} p50 {v.get('p50')} p95 {v.get('p95')} max {v.get('max')}"
                                             for k, v in self.seconds_by_kind.items() if v)),
            ("DynamoDB ms, unfaulted", " ".join(f"{k} {v}" for k, v in self.dynamodb_pass_ms.items()) or "-"),
            ("CPU seconds", " ".join(f"{k} {v}" for k, v in self.cpu_seconds.items())
             + f" (on {os.cpu_count()} cores)"),
            ("duration", f"{self.duration_s:.1f} s (checking the records: {self.check_seconds:.1f} s)"),
            ("logs", self.work_dir),
            ("verdict", "PASS" if self.ok else "FAIL: " + "; ".join(self.failures)),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"switchboard soak {self.run_id}", "-" * (width + 60)]
        lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
        for title, examples in (("malformed", self.malformed_examples), ("records", self.record_examples),
                                ("mismatches", self.mismatch_examples)):
            for example in examples:
                lines.append(f"  {title}: {json.dumps(example, default=str)[:400]}")
        return "\n".join(lines)


# -- checking the records -------------------------------------------------------------------------------------

@dataclass
class LogScan:
    fallback: Counter[str] = field(default_factory=Counter)  # request id -> fallback lines
    fallback_records: dict[str, dict] = field(default_factory=dict)
    fallback_reason: dict[str, str] = field(default_factory=dict)
    superseded: set[str] = field(default_factory=set)  # fallback lines whose write landed after all
    reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # other ERROR lines and tracebacks, by message
    task_ids: Counter[str] = field(default_factory=Counter)


STORED_LATE = "call record stored after its fallback line; that line is superseded"  # ledger/recorder.py


def scan_gateway_log(path: Path, fallback_message: str) -> LogScan:
    scan = LogScan()
    for line in path.read_text(errors="replace").splitlines():
        entry = None
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
        if not isinstance(entry, dict):
            plain = plain_text_problem(line)
            if plain:
                scan.errors[plain] += 1
            continue
        if entry.get("message") == fallback_message:
            request_id = str(entry.get("request_id"))
            scan.fallback[request_id] += 1
            scan.fallback_records[request_id] = entry.get("call_record") or {}
            scan.fallback_reason[request_id] = str(entry.get("reason"))
            scan.reasons[str(entry.get("reason"))] += 1
            scan.task_ids[str(entry.get("task_id"))] += 1
        elif entry.get("message") == STORED_LATE:
            scan.superseded.add(str(entry.get("request_id")))
        elif str(entry.get("level", "")).upper() in {"ERROR", "CRITICAL"} or entry.get("exception"):
            scan.errors[str(entry.get("message"))[:80]] += 1
    return scan


def plain_text_problem(line: str) -> str | None:
    """A line the gateway wrote outside its JSON logger that says something went wrong (uvicorn, asyncio)."""
    text = line.strip()
    if text.startswith("ERROR:") or text.startswith("Traceback") or text == "socket.send() raised exception.":
        return text[:80]
    if "Warning:" in text and not text.startswith("RuntimeWarning: Enable tracemalloc"):
        return text.split("Warning:", 1)[0].rsplit(" ", 1)[-1] + "Warning:" + text.split("Warning:", 1)[1][:60]
    return None


def table_counts(dynamodb, table: str, task_id: str) -> tuple[Counter[str], dict[str, dict]]:
    """request id -> call items of this run's task in the table, and each one's status and outcome (one scan)."""
    counts: Counter[str] = Counter()
    items: dict[str, dict] = {}
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table, FilterExpression="pk = :pk", ProjectionExpression="request_id, #s, outcome",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":pk": {"S": f"TASK#{task_id}"}})
    for page in pages:
        for item in page.get("Items", []):
            request_id = item["request_id"]["S"]
            counts[request_id] += 1
            items[request_id] = {"status": int(item["status"]["N"]) if "status" in item else None,
                                 "outcome": item.get("outcome", {}).get("S")}
    return counts, items


def check_records(report: SoakReport, outcomes: list[Outcome], store, dynamodb, table: str, task_id: str,
                  log: LogScan, put_fault: dict[str, str], index_lookups: int | None = None) -> None:
    """Exactly one record per request id: in the table or in the fallback log.

    One scan of the run's partition counts the table's items per request id (duplicates included).
    `CallStore.call` (the gateway's own by-request index) confirms every id the scan did not find, and
    `index_lookups` of those it did (None: all). moto answers an index query by walking the whole table,
    so looking up every id of a long soak would cost minutes.
    """
    in_table, stored_items = table_counts(dynamodb, table, task_id)
    found_ids = [o.request_id for o in outcomes if o.request_id and o.request_id in in_table]
    sampled = set(found_ids if index_lookups is None or index_lookups >= len(found_ids)
                  else random.Random(0).sample(found_ids, index_lookups))
    seen_ids = set()
    shapes: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    problems_by_kind: Counter[str] = Counter()
    for outcome in outcomes:
        request_id = outcome.request_id
        if not request_id:
            continue  # already malformed: no id to look for
        seen_ids.add(request_id)
        item = None
        if request_id not in in_table or request_id in sampled:
            item = store.call(request_id)
            report.index_lookups += 1
            if bool(item) != (request_id in in_table):
                report.index_disagreements += 1
        stored = max(in_table.get(request_id, 0), 1 if item else 0)
        logged = log.fallback.get(request_id, 0) - (1 if request_id in log.superseded and stored else 0)
        record = item or log.fallback_records.get(request_id) or stored_items.get(request_id) or {}
        if stored + logged == 1:
            if stored:
                report.records_in_table += 1
            else:
                report.records_in_log += 1
            check_consistency(report, outcome, record)
            continue
        shape = "missing" if stored + logged == 0 else "+".join(["table"] * stored + ["log"] * logged)
        shapes[shape] += 1
        if shape == "missing":
            report.records_missing += 1
        else:
            report.records_duplicated += 1
            causes[f"{log.fallback_reason.get(request_id)}, PutItem {put_fault.get(request_id, 'not seen')}"] += 1
        problems_by_kind[f"{shape} {outcome.kind}"] += 1
        if sum(1 for e in report.record_examples if e["shape"] == shape) < MAX_EXAMPLES // 2:
            report.record_examples.append({
                "request_id": request_id, "kind": outcome.kind, "shape": shape, "client_status": outcome.status,
                "ending": outcome.ending, "record_status": record.get("status"), "outcome": record.get("outcome"),
                "attempts": [(a.get("model"), a.get("outcome")) for a in record.get("attempts") or []],
                "fallback_reason": log.fallback_reason.get(request_id),
                "put_item_at_proxy": put_fault.get(request_id)})
    report.duplicates_by_shape = {k: v for k, v in shapes.items() if k != "missing"}
    report.duplicates_by_cause = dict(causes.most_common())
    report.record_problems_by_kind = dict(problems_by_kind.most_common())
    report.orphan_records = len(set(in_table) - seen_ids) + len(
        {rid for rid, rec in log.fallback_records.items() if rec.get("task_id") == task_id} - seen_ids)


def check_consistency(report: SoakReport, outcome: Outcome, record: dict) -> None:
    """The record's status should tell the story the client saw."""
    status = record.get("status")
    expected: Callable[[int], bool]
    if outcome.ending == "disconnected":
        expected = lambda s: s in (200, 499)  # noqa: E731 (a stream can finish before the hang-up lands)
    elif outcome.ending == "error_event":
        expected = lambda s: s >= 400  # noqa: E731
    elif outcome.ending == "done":
        expected = lambda s: s == 200  # noqa: E731
    else:
        expected = lambda s: s == outcome.status  # noqa: E731
    if not isinstance(status, int) or not expected(status):
        report.record_mismatches += 1
        if len(report.mismatch_examples) < MAX_EXAMPLES:
            report.mismatch_examples.append({"request_id": outcome.request_id, "kind": outcome.kind,
                                             "client_status": outcome.status, "ending": outcome.ending,
                                             "record_status": status, "outcome": record.get("outcome")})


# -- the run --------------------------------------------------------------------------------------------------

async def drive(gateway_url: str, task_id: str, waves: int, streams: int, seed: int, settle_s: float,
                after_wave: Callable[[int], None], request_timeout_s: float) -> tuple[list[Outcome], list[float],
                                                                                      Concurrency]:
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    durations: list[float] = []
    concurrency = Concurrency()
    url = gateway_url + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=streams + 50, max_keepalive_connections=streams + 50)
    timeout = httpx.Timeout(connect=10.0, read=30.0, write=10.0, pool=30.0)

    def fresh_client() -> httpx.AsyncClient:
        # A client per wave: reusing connections that sat idle through a long wave races uvicorn's keep-alive
        # timeout (the server closes as the request goes out: a ReadError no gateway could prevent).
        return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False)

    async with fresh_client() as client:
        await warm_up(client, url, task_id + "-warmup")
    for wave in range(waves):
        plan = plan_wave(streams, rng)
        started = time.perf_counter()
        async with fresh_client() as client:
            outcomes += await asyncio.gather(*(
                send_bounded(client, url, task_id, kind, Outcome(wave, i, kind.name), concurrency, request_timeout_s)
                for i, kind in enumerate(plan)))
        durations.append(time.perf_counter() - started)
        await asyncio.sleep(settle_s)
        after_wave(wave)
    return outcomes, durations, concurrency


async def send_bounded(client: httpx.AsyncClient, url: str, task_id: str, kind: Kind, outcome: Outcome,
                       concurrency: Concurrency, timeout_s: float) -> Outcome:
    try:
        return await asyncio.wait_for(send_one(client, url, task_id, kind, outcome, concurrency), timeout_s)
    except TimeoutError:
        outcome.ending, outcome.problem = "broken", f"no ending within {timeout_s:.0f} s"
        return outcome


async def warm_up(client: httpx.AsyncClient, url: str, task_id: str) -> None:
    """A few plain calls first, so the gateway has its secrets and AWS clients before the waves start."""
    for _ in range(3):
        body = {"model": "openai/ok", "stream": True, "messages": [{"role": "user", "content": "warm up"}]}
        headers = {"authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": task_id}
        async with client.stream("POST", url, json=body, headers=headers) as response:
            await response.aread()
            if response.status_code != 200:
                raise SoakError(f"warm-up call failed with {response.status_code}: {response.text[:300]}")


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
    from switchboard.ledger.recorder import FALLBACK_MESSAGE

    say = progress or (lambda _message: None)
    started = time.perf_counter()
    own_dir = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="switchboard-soak-")) if work_dir is None else work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    task_id = f"soak-{run_id}"
    report = SoakReport(run_id, streams, waves, memory_threshold_mb=memory_threshold_mb, work_dir=str(work_dir))
    stack = proxy = simulator = gateway = sampler = None
    alive_checked = False
    try:
        say("starting the simulator, moto, the DynamoDB fault proxy and the gateway")
        simulator = start_simulator(work_dir, first_token_ms, tokens, gap_ms)
        simulator.wait_healthy()  # once assigned, so the finally below stops it even if it never gets healthy
        stack = _local_stack()
        info = stack.start(write_state=False)
        proxy = DynamoFaultProxy(info.endpoint, dynamodb_fault_rate, dynamodb_delay_share, dynamodb_delay_s,
                                 seed).start()
        gateway = start_gateway(work_dir, simulator.url, proxy.url, info.env(), write_budget_ms)
        gateway.wait_healthy()
        sampler = RssSampler(gateway.process.pid).start()

        def after_wave(wave: int) -> None:
            rss = proc_status_kb(gateway.process.pid, "VmRSS")
            report.rss_after_wave_mb.append(round((rss or 0) / 1024, 1))
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
        proxy.wait_quiet(quiet_s=2.0, timeout=90)  # the gateway's ledger has nothing left to write
        time.sleep(0.5)  # a write that just landed late logs its "stored late" line right after its reply
        report.gateway_alive, alive_checked = gateway.alive(), True
        report.cpu_seconds = {name: round(cpu_seconds(pid) or 0.0, 1) for name, pid in (
            ("gateway", gateway.process.pid), ("simulator", simulator.process.pid), ("harness", os.getpid()))}
        peak_kb = max(sampler.peak_kb, proc_status_kb(gateway.process.pid, "VmHWM") or 0)
        report.peak_rss_mb = round(peak_kb / 1024, 1)
        if report.rss_after_wave_mb:
            report.rss_growth_mb = round(report.rss_after_wave_mb[-1] - report.rss_after_wave_mb[0], 1)
        report.dynamodb_requests = proxy.counts["dynamodb"]
        report.dynamodb_faults = {"http_500": proxy.counts["dynamodb_error"], "delay": proxy.counts["dynamodb_delay"],
                                  "down_for_record": proxy.counts["dynamodb_error_sticky"]}
        say("checking one record per request")
        checking = time.perf_counter()
        log = scan_gateway_log(gateway.log_path, FALLBACK_MESSAGE)
        report.fallback_reasons = dict(log.reasons)
        report.gateway_error_lines = dict(log.errors)
        dynamodb = _dynamodb_client(info.endpoint)
        from switchboard.ledger.store import CallStore

        report.dynamodb_pass_ms = percentiles(proxy.forward_ms)
        check_records(report, outcomes, CallStore(dynamodb, info.table), dynamodb, info.table, task_id, log,
                      dict(proxy.put_fault), index_lookups)
        report.check_seconds = round(time.perf_counter() - checking, 1)
        report.judge(streams * waves)
    except SoakError as exc:
        report.failures.append(str(exc))
    finally:
        if sampler is not None:
            sampler.stop()
        if gateway is not None and not alive_checked:
            report.gateway_alive = gateway.alive()
        for server in (gateway, simulator):
            if server is not None:
                server.stop()
        if proxy is not None:
            proxy.stop()
        if stack is not None:
            stack.server.stop()
        report.duration_s = round(time.perf_counter() - started, 1)
    if own_dir and report.ok and not keep_logs:
        shutil.rmtree(work_dir, ignore_errors=True)
        report.work_dir += " (removed: the run passed)"
    return report


def summarize_outcomes(report: SoakReport, outcomes: list[Outcome], concurrency: Concurrency) -> None:
    report.requests_sent = len(outcomes)
    report.by_kind = {kind.name: sum(1 for o in outcomes if o.kind == kind.name) for kind in KINDS}
    report.statuses = dict(Counter(str(o.status) for o in outcomes))
    report.statuses_by_kind = {kind.name: dict(Counter(f"{o.status} {o.ending}" for o in outcomes
                                                       if o.kind == kind.name)) for kind in KINDS}
    report.endings = dict(Counter(o.ending for o in outcomes))
    report.upstream_faults = sum(1 for o in outcomes if KIND_BY_NAME[o.kind].upstream_fault)
    report.client_disconnects = report.by_kind.get("client_disconnect", 0)
    report.well_formed = sum(1 for o in outcomes if o.well_formed)
    report.malformed = report.requests_sent - report.well_formed
    report.without_request_id = sum(1 for o in outcomes if not o.request_id)
    report.malformed_examples = [asdict(o) for o in outcomes if not o.well_formed][:MAX_EXAMPLES]
    report.peak_concurrent_requests = concurrency.peak_requests
    report.peak_concurrent_streams = concurrency.peak_streams
    report.seconds_by_kind = {kind.name: percentiles([o.seconds * 1000 for o in outcomes if o.kind == kind.name])
                              for kind in KINDS}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and max (nearest rank), rounded; empty for no values."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(p / 100 * len(ordered) + 0.5) - 1))], 1)

    return {"p50": rank(50), "p95": rank(95), "max": round(ordered[-1], 1)}


def _local_stack():
    from switchboard.ops.local_stack import LocalStack

    return LocalStack()


def _dynamodb_client(endpoint: str):
    import boto3

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=250, help="concurrent streams per wave")
    parser.add_argument("--waves", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dynamodb-fault-rate", type=float, default=0.10,
                        help="share of DynamoDB requests failed or stalled")
    parser.add_argument("--write-budget-ms", type=int, default=WRITE_BUDGET_MS,
                        help="the gateway's SWITCHBOARD_LEDGER_WRITE_BUDGET_MS (stalls last 1.5 s)")
    parser.add_argument("--memory-threshold-mb", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="hard limit on the whole run, in seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs even when the run passes")
    args = parser.parse_args(argv)

    def on_alarm(*_args) -> None:
        raise SoakError(f"the soak overran its hard limit of {args.timeout:.0f} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout) + 60)  # the last resort; run_soak bounds itself within args.timeout
    try:
        report = run_soak(args.streams, args.waves, seed=args.seed, dynamodb_fault_rate=args.dynamodb_fault_rate,
                          write_budget_ms=args.write_budget_ms, memory_threshold_mb=args.memory_threshold_mb,
                          total_timeout_s=args.timeout,
                          keep_logs=args.keep_logs, progress=lambda m: print(f"soak: {m}", file=sys.stderr))
    finally:
        signal.alarm(0)
    print(report.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
