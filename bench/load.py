"""The load client: OpenAI streaming requests from one asyncio process, clocked per request.

TTFT is send to the first SSE event carrying non-empty `choices[0].delta.content`; total is send to
`data: [DONE]`. Targets take turns in small batches (direct, gateway, [litellm], direct, ...) so a
noisy moment on the machine lands on all of them alike.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from bench.stats import StreamWatcher

T = TypeVar("T")
PROMPT = [{"role": "user", "content": "Say something short."}]


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # up to and including /v1
    model: str
    api_key: str | None = None

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"

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


@dataclass
class Results:
    """Samples per target name, in the order they were taken."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, name: str, batch: list[Sample]) -> None:
        self.samples.setdefault(name, []).extend(batch)


def make_client(max_connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(http1=True, http2=False, limits=limits, trust_env=False,
                             timeout=httpx.Timeout(60.0, connect=10.0, pool=60.0))


def chat_body(target: Target, simulator: dict | None = None) -> dict:
    body: dict = {"model": target.model, "stream": True, "messages": PROMPT}
    if simulator:
        body["simulator"] = simulator  # the gateway and LiteLLM forward unknown fields; pacing for the upstream
    return body


async def stream_once(client: httpx.AsyncClient, target: Target, simulator: dict | None = None) -> Sample:
    body = chat_body(target, simulator)
    request = client.build_request("POST", target.url, json=body, headers=target.headers())
    sample = Sample(started=time.perf_counter())
    try:
        response = await client.send(request, stream=True)
        try:
            if response.status_code != 200:
                text = (await response.aread())[:300].decode(errors="replace")
                sample.error = f"HTTP {response.status_code}: {text}"
                return sample
            await _read_stream(response, sample)
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    return sample


async def _read_stream(response: httpx.Response, sample: Sample) -> None:
    watcher = StreamWatcher()
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
        sample.error = "stream ended without [DONE]"
    elif not watcher.first_token:
        sample.error = "no content token"


async def run_batch(client: httpx.AsyncClient, target: Target, concurrency: int, requests: int,
                    simulator: dict | None = None) -> list[Sample]:
    """`requests` streams, `concurrency` of them in flight at once (closed loop: each worker sends the next)."""
    remaining = requests
    samples: list[Sample] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await stream_once(client, target, simulator))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return samples


def batch_size(concurrency: int) -> int:
    """Requests per turn: enough that `concurrency` streams really overlap, few enough to interleave often."""
    return max(10, 2 * concurrency)


async def interleaved(client: httpx.AsyncClient, targets: list[Target], concurrency: int,
                      per_target: int) -> Results:
    results = Results()
    size = batch_size(concurrency)
    done = turn = 0
    while done < per_target:
        count = min(size, per_target - done)
        for target in rotated(targets, turn):
            results.add(target.name, await run_batch(client, target, concurrency, count))
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
