"""The load client: streaming requests from one asyncio process, clocked per request.

Chat Completions: TTFT is send to the first SSE event carrying non-empty `choices[0].delta.content`; total
is send to `data: [DONE]`. Responses: the first non-empty `response.output_text.delta`, then
`response.completed`. Bedrock ConverseStream (the simulator, directly): the first text `contentBlockDelta`,
then `metadata`. Targets take turns in small batches (direct, floor, gw-asgi, ..., then floor, gw-asgi, ...,
direct) so a noisy moment on the machine lands on all of them alike. Each worker waits `pause_s` between one
call's end and its next call, as a voice agent's turns are apart. Around each batch the CPU time of the
target's server process group (and of the upstream's) is read, so CPU per call is measured in the same run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from bench.converse import AwsCredentials, ConverseWatcher, converse_body, converse_path, signed_headers
from bench.cpu import CpuAccount
from bench.stats import ResponsesWatcher, StreamWatcher

T = TypeVar("T")
PROMPT_TEXT = "Say something short."
PROMPT = [{"role": "user", "content": PROMPT_TEXT}]
CHAT, RESPONSES, CONVERSE = "chat", "responses", "converse"  # the wire format a target speaks
WATCHERS = {CHAT: StreamWatcher, RESPONSES: ResponsesWatcher, CONVERSE: ConverseWatcher}


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # up to and including /v1; for CONVERSE the server's root
    model: str
    api_key: str | None = None
    api: str = CHAT
    aws: AwsCredentials | None = None  # CONVERSE only
    pid: int | None = None  # the server process (group leader) that serves it, for CPU per call
    upstream_pid: int | None = None  # the simulator behind it, when it is not the server itself

    @property
    def url(self) -> str:
        if self.api == CONVERSE:
            return self.base_url + converse_path(self.model)
        return self.base_url + ("/responses" if self.api == RESPONSES else "/chat/completions")

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class Sample:
    started: float  # perf_counter at send
    ttft_s: float | None = None
    total_s: float | None = None
    content_events: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.ttft_s is not None and self.total_s is not None


CpuReader = Callable[[int], float | None]  # a process group leader's pid -> its CPU seconds so far


@dataclass
class Results:
    """Samples per target name, in the order they were taken, and the CPU its server (and the upstream
    behind it) spent over its batches."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    cpu: dict[str, CpuAccount] = field(default_factory=dict)
    upstream_cpu: dict[str, CpuAccount] = field(default_factory=dict)

    def add(self, name: str, batch: list[Sample]) -> None:
        self.samples.setdefault(name, []).extend(batch)

    def add_cpu(self, name: str, before: CpuReadings, after: CpuReadings, calls: int) -> None:
        if before.server is not None or after.server is not None:
            self.cpu.setdefault(name, CpuAccount()).add(before.server, after.server, calls)
        if before.upstream is not None or after.upstream is not None:
            self.upstream_cpu.setdefault(name, CpuAccount()).add(before.upstream, after.upstream, calls)


@dataclass(frozen=True)
class CpuReadings:
    server: float | None = None
    upstream: float | None = None

    @classmethod
    def of(cls, target: Target, read: CpuReader | None) -> CpuReadings:
        if read is None:
            return cls()
        return cls(read(target.pid) if target.pid else None,
                   read(target.upstream_pid) if target.upstream_pid else None)


def make_client(max_connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(http1=True, http2=False, limits=limits, trust_env=False,
                             timeout=httpx.Timeout(60.0, connect=10.0, pool=60.0))


def chat_body(target: Target, simulator: dict | None = None) -> dict:
    body: dict = {"model": target.model, "stream": True, "messages": PROMPT}
    if simulator:
        body["simulator"] = simulator  # the gateway and LiteLLM forward unknown fields; pacing for the upstream
    return body


def responses_body(target: Target, simulator: dict | None = None) -> dict:
    body: dict = {"model": target.model, "input": PROMPT_TEXT, "stream": True}
    if simulator:
        body["simulator"] = simulator  # passed through to the chat body the gateway builds
    return body


def encoded_request(target: Target, simulator: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of one streaming request in the target's wire format; ConverseStream ones signed."""
    headers = {"content-type": "application/json", **target.headers()}
    if target.api == CONVERSE:
        if target.aws is None:
            raise ValueError(f"{target.name}: a ConverseStream target needs AWS credentials")
        body = converse_body(PROMPT_TEXT)
        return body, signed_headers(target.url, body, target.aws)
    payload = responses_body(target, simulator) if target.api == RESPONSES else chat_body(target, simulator)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(), headers  # as httpx's json=


async def stream_once(client: httpx.AsyncClient, target: Target, simulator: dict | None = None) -> Sample:
    body, headers = encoded_request(target, simulator)
    request = client.build_request("POST", target.url, content=body, headers=headers)
    sample = Sample(started=time.perf_counter())
    try:
        response = await client.send(request, stream=True)
        try:
            if response.status_code != 200:
                text = (await response.aread())[:300].decode(errors="replace")
                sample.error = f"HTTP {response.status_code}: {text}"
                return sample
            await _read_stream(response, sample, WATCHERS[target.api]())
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    return sample


async def _read_stream(response: httpx.Response, sample: Sample,
                       watcher: StreamWatcher | ResponsesWatcher | ConverseWatcher) -> None:
    async for data in response.aiter_raw():
        if watcher.done:
            continue  # read on to the end of the body, so the connection goes back to the pool
        watcher.feed(data)
        if sample.ttft_s is None and watcher.first_token:
            sample.ttft_s = time.perf_counter() - sample.started
        if watcher.done:
            sample.total_s = time.perf_counter() - sample.started
    sample.content_events = watcher.content_events
    if watcher.error:
        sample.error = watcher.error
    elif not watcher.done:
        sample.error = "stream ended without [DONE]" if isinstance(watcher, StreamWatcher) else (
            "stream ended before its last event")
    elif not watcher.first_token:
        sample.error = "no content token"


async def run_batch(client: httpx.AsyncClient, target: Target, concurrency: int, requests: int,
                    simulator: dict | None = None, pause_s: float = 0.0) -> list[Sample]:
    """`requests` streams, `concurrency` of them in flight at once (closed loop: each worker sends the next,
    `pause_s` after its previous one ended; after its last one too, so a batch's trailing work is in it)."""
    remaining = requests
    samples: list[Sample] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await stream_once(client, target, simulator))
            if pause_s:
                await asyncio.sleep(pause_s)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return samples


def batch_size(concurrency: int) -> int:
    """Requests per turn: enough that `concurrency` streams really overlap, few enough to interleave often."""
    return max(10, 2 * concurrency)


async def interleaved(client: httpx.AsyncClient, targets: list[Target], concurrency: int, per_target: int, *,
                      simulator: dict | None = None, pause_s: float = 0.0, cpu: CpuReader | None = None) -> Results:
    """`per_target` streams to each target in turns of `batch_size` (CPU read before and after each turn)."""
    results = Results()
    size = batch_size(concurrency)
    done = turn = 0
    while done < per_target:
        count = min(size, per_target - done)
        for target in rotated(targets, turn):
            before = CpuReadings.of(target, cpu)
            batch = await run_batch(client, target, concurrency, count, simulator, pause_s)
            results.add_cpu(target.name, before, CpuReadings.of(target, cpu), len(batch))
            results.add(target.name, batch)
        done += count
        turn += 1
    return results


def rotated(items: list[T], turn: int) -> list[T]:
    """Each turn starts with the next target, so none always follows the same (maybe still busy) one."""
    if not items:
        return []
    start = turn % len(items)
    return items[start:] + items[:start]


async def warm_up(client: httpx.AsyncClient, targets: list[Target], requests: int) -> dict[str, list[str]]:
    """A few streams per target (connections, caches, lazy imports); the errors seen, per target."""
    errors: dict[str, list[str]] = {}
    for target in targets:
        samples = await run_batch(client, target, 2, requests)
        errors[target.name] = [s.error for s in samples if s.error]
    return errors
