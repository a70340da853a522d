"""The soak's client: waves of streaming requests at once, each judged on how it ended.

A request ends well-formed when its SSE events parse and the stream ends with `[DONE]` (Responses:
`response.completed` or `response.incomplete`) or with an error event, or when a refusal comes back as
an OpenAI JSON error. httpx-sse reads the events off the wire; what is checked here is what the gateway
promises about them, not the SSE framing itself (tests/integration checks the bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from bench.servers import GATEWAY_KEY, HarnessError
from bench.soak.plan import Kind, plan_wave


class SoakError(HarnessError):
    """The harness could not do its job (a server would not start, the run overran its time)."""


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
    def track(self, attribute: str) -> Iterator[None]:
        setattr(self, attribute, getattr(self, attribute) + 1)
        peak = "peak_" + attribute
        setattr(self, peak, max(getattr(self, peak), getattr(self, attribute)))
        try:
            yield
        finally:
            setattr(self, attribute, getattr(self, attribute) - 1)


def request_for(url: str, task_id: str, kind: Kind, outcome: Outcome) -> tuple[str, dict, dict[str, str]]:
    """(url, JSON body, headers) of the request `kind` plans, through the door its API takes."""
    prompt = f"soak request {outcome.wave}.{outcome.index}"
    body: dict = {"model": kind.model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    if kind.api == "responses":
        body = {"model": kind.model, "stream": True, "input": prompt}
        url = url.replace("/chat/completions", "/responses")
    if kind.simulator:
        body["simulator"] = dict(kind.simulator)
    headers = {"authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": task_id, **dict(kind.headers)}
    return url, body, headers


async def send_one(client: httpx.AsyncClient, url: str, task_id: str, kind: Kind, outcome: Outcome,
                   concurrency: Concurrency) -> Outcome:
    url, body, headers = request_for(url, task_id, kind, outcome)
    started = time.perf_counter()
    try:
        with concurrency.track("requests"):
            async with aconnect_sse(client, "POST", url, json=body, headers=headers) as source:
                response = source.response
                outcome.status = response.status_code
                outcome.request_id = response.headers.get("x-request-id")
                if response.status_code == 200:
                    with concurrency.track("streams"):
                        outcome.problem = await read_stream(source, outcome, kind.expect == "disconnect")
                else:
                    outcome.problem = check_error_body(await response.aread(), response.headers, outcome)
    except (httpx.HTTPError, OSError) as exc:
        # httpx_sse.SSEError (a 200 that is not text/event-stream) is an httpx.TransportError: caught here too
        outcome.ending = "broken"
        outcome.problem = f"{type(exc).__name__}: {exc}"[:300]
    outcome.seconds = time.perf_counter() - started
    if outcome.problem is None and not outcome.request_id:
        outcome.problem = "no x-request-id header"
    return outcome


async def read_stream(source: EventSource, outcome: Outcome, hang_up: bool) -> str | None:
    """None if every SSE event parses and the stream ends with [DONE] or an error event; else the problem.

    With `hang_up`, stop after the first content chunk (the caller then closes the connection)."""
    last: str | None = None
    # aclosing: a hang-up leaves the loop early, and the event reader should let go before the response closes
    async with contextlib.aclosing(source.aiter_sse()) as events:
        async for event in events:
            if last == "done" or (last == "error_event" and event.data != "[DONE]"):
                return f"an event after the stream's end: {shown(event)}"
            outcome.events += 1
            if last == "error_event":  # the error event, then [DONE]: a chat stream's end after a failure
                continue
            last, problem = classify(event)
            if problem:
                return problem
            if hang_up and last == "content":
                outcome.ending = "disconnected"
                return None
    if last not in ("done", "error_event"):
        outcome.ending = "broken"
        return f"stream ended without [DONE] or an error event (last event: {last})"
    outcome.ending = last
    return None


def shown(event: ServerSentEvent) -> str:
    """An event as a problem message quotes it: short, and with its field names."""
    return repr(event)[:160]


def classify(event: ServerSentEvent) -> tuple[str, str | None]:
    """(what the event is: done | error_event | content | chunk | bad, the problem with it or None)."""
    if event.event != "message":
        return classify_responses(event)
    if "\n" in event.data or event.id or event.retry is not None:
        return "bad", f"not a single data line: {shown(event)}"
    if event.data == "[DONE]":
        return "done", None
    try:
        payload = event.json()
    except ValueError:
        return "bad", f"event is not JSON: {shown(event)}"
    if not isinstance(payload, dict):
        return "bad", f"event is not a JSON object: {shown(event)}"
    if "error" in payload:
        error = payload["error"]
        ok = isinstance(error, dict) and isinstance(error.get("message"), str)
        return "error_event", None if ok else f"error event without error.message: {shown(event)}"
    choices = payload.get("choices") or [{}]
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    return ("content" if isinstance(delta, dict) and delta.get("content") else "chunk"), None


RESPONSES_ENDINGS = {"response.completed": "done", "response.incomplete": "done", "response.failed": "error_event"}


def classify_responses(event: ServerSentEvent) -> tuple[str, str | None]:
    """A Responses API event: named by `event:`, one `data:` line whose JSON `type` is that name."""
    if "\n" in event.data or event.id or event.retry is not None:
        return "bad", f"not an event line and one data line: {shown(event)}"
    try:
        payload = event.json()
    except ValueError:
        return "bad", f"event is not JSON: {shown(event)}"
    if not isinstance(payload, dict) or payload.get("type") != event.event:
        return "bad", f"event type does not match its name: {shown(event)}"
    if event.event == "response.failed" and not (payload.get("response") or {}).get("error"):
        return "bad", "response.failed without an error"
    if event.event in RESPONSES_ENDINGS:
        return RESPONSES_ENDINGS[event.event], None
    return ("content" if event.event == "response.output_text.delta" else "chunk"), None


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


async def drive(gateway_url: str, task_id: str, waves: int, streams: int, seed: int, settle_s: float,
                after_wave: Callable[[int], None], request_timeout_s: float) -> tuple[list[Outcome], list[float],
                                                                                      Concurrency]:
    """Every wave, all its requests at once; (their outcomes, each wave's seconds, the peaks reached)."""
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
