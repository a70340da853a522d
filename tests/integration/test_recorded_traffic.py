"""Real provider traffic, recorded by other projects, replayed through the gateway over real sockets.

Each file in tests/fixtures/recorded/ is one response a provider really sent (see its `source`). A
raw socket server writes it back cut at awkward offsets (seeded random ones, both sides of every
event's blank line, inside multi-byte characters), the gateway relays it, and the official OpenAI
SDK reads the result. What the SDK sees and what the call record says are checked against what
the recording itself says, folded here from the recorded bytes: nothing expected is typed by hand.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest

from switchboard.ledger.record import CallRecord
from switchboard.providers.registry import PROVIDERS
from tests.conftest import EXTRA_SECRETS
from tests.replay import (
    Cuts,
    RecordedResponse,
    ReplayServer,
    UpstreamRequest,
    event_boundary_cuts,
    seeded_cuts,
    utf8_interior_cuts,
)

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
REPLAY_KEY = "sk-test-replay-key-fake"
EXTRA_SECRETS.append(REPLAY_KEY)  # the end-of-run scan looks for it in every log line, record and response
ASK = [{"role": "user", "content": "Answer as you did when this was recorded."}]
# Test prices (USD per million tokens), distinct so that a token billed at the wrong rate shows.
PRICE = {"input": 1.0, "output": 2.0, "cached_input": 0.25, "cache_write": 1.25}
FREE_PROVIDERS = ("local",)  # the gateway bills nothing for hardware the operator runs
MAX_CUT_OFFSETS = 120  # per replay: enough to hit every kind of boundary, few enough to stay quick
ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
                    "refusal": "content_filter"}


# --- the recordings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    name: str
    provider: str
    source: dict
    request: dict | None
    response: dict

    @classmethod
    def load(cls, path: Path) -> Recording:
        data = json.loads(path.read_text())
        return cls(data["name"], data["provider"], data["source"], data.get("request"), data["response"])

    @property
    def body(self) -> bytes:
        return self.response["body"].encode("utf-8")

    @property
    def status(self) -> int:
        return self.response["status"]

    @property
    def is_stream(self) -> bool:
        return self.status == 200 and self.response["headers"].get("content-type", "").startswith("text/event-stream")

    def replayed(self) -> RecordedResponse:
        return RecordedResponse(self.status, self.response.get("reason") or "", self.response["headers"], self.body)

    def upstream_model(self) -> str:
        """The model the recording was made with: as requested, else as the stream names it."""
        body = (self.request or {}).get("body")
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            return body["model"]
        for _event, data in sse_events(self.body):
            parsed = _json(data)
            model = parsed.get("model") or _dict(parsed.get("message")).get("model")
            if isinstance(model, str):
                return model
        return "recorded-model"

    def cuts(self) -> list[Cuts]:
        seed = zlib.crc32(self.name.encode())
        plans = [seeded_cuts(self.body, seed), seeded_cuts(self.body, seed + 1)]
        if self.is_stream:
            plans.append(event_boundary_cuts(self.body))
        if any(byte >= 0x80 for byte in self.body):
            plans.append(utf8_interior_cuts(self.body))
        return [_capped(plan) for plan in plans]


def _capped(cuts: Cuts) -> Cuts:
    """At most MAX_CUT_OFFSETS of each kind, spread evenly over the body."""
    def spread(offsets: tuple[int, ...]) -> tuple[int, ...]:
        step = max(1, -(-len(offsets) // MAX_CUT_OFFSETS))
        return offsets[::step]

    return Cuts(cuts.name, spread(cuts.body), spread(cuts.wire))


def all_recordings() -> list[Recording]:
    return [Recording.load(path) for path in sorted(RECORDED.glob("*.json"))]


RECORDINGS = all_recordings()


# --- reading the recorded bytes (independently of the gateway's own parser) ----------------------


def sse_events(body: bytes) -> Iterator[tuple[str, str]]:
    """(event name, data) per SSE event; comment lines (": keep-alive") carry nothing."""
    text = body.decode("utf-8").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        name, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            yield name, "\n".join(data)


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Usage:
    prompt: int | None
    completion: int | None
    total: int | None = None
    cached: int | None = None  # cache reads
    cache_write: int | None = None

    @classmethod
    def from_openai(cls, usage: dict) -> Usage:
        details = _dict(usage.get("prompt_tokens_details"))
        return cls(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")),
                   _int(usage.get("total_tokens")), _int(details.get("cached_tokens")))

    def billed_output(self) -> int:
        """Output tokens to bill: xAI counts reasoning only in total_tokens, above prompt + completion."""
        unreported = (self.total or 0) - (self.prompt or 0) - (self.completion or 0)
        return (self.completion or 0) + max(0, unreported)

    def cost(self) -> float:
        cached, write = self.cached or 0, self.cache_write or 0
        usd = ((self.prompt or 0) - cached - write) * PRICE["input"] + cached * PRICE["cached_input"]
        usd += write * PRICE["cache_write"] + self.billed_output() * PRICE["output"]
        return round(usd / 1_000_000, 10)


@dataclass
class Answer:
    """What a stream says, folded: the same fold reads the recording and what the client received."""

    text: str = ""
    reasoning: str = ""
    calls: dict[int, dict] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    error: dict | None = None  # {"message", "status"} of an error the stream ended with

    @property
    def tool_calls(self) -> list[dict]:
        return [self.calls[index] for index in sorted(self.calls)]

    def call(self, index: int) -> dict:
        return self.calls.setdefault(index, {"id": None, "name": "", "arguments": ""})


def fold_chat_chunks(chunks: Iterable[dict]) -> Answer:
    """Chat Completions chunks -> text, reasoning, tool calls, finish reason, usage; stops at an error."""
    answer = Answer()
    for chunk in chunks:
        if isinstance(chunk.get("error"), dict | str):
            answer.error = _error_of(chunk["error"])
            return answer
        usage = _dict(chunk.get("usage")) or _dict(_dict(chunk.get("x_groq")).get("usage"))  # Groq: x_groq.usage
        if usage:
            answer.usage = Usage.from_openai(usage)
        for choice in chunk.get("choices") or ():
            _fold_delta(answer, _dict(choice.get("delta")))
            answer.finish_reason = choice.get("finish_reason") or answer.finish_reason
    return answer


def _fold_delta(answer: Answer, delta: dict) -> None:
    content = delta.get("content")
    if isinstance(content, str):
        answer.text += content
    elif isinstance(content, list):  # Mistral: typed parts, thinking among them
        for part in content:
            if _dict(part).get("type") == "text":
                answer.text += part.get("text") or ""
            elif _dict(part).get("type") == "thinking":
                answer.reasoning += "".join(_dict(p).get("text") or "" for p in part.get("thinking") or ())
    reasoning = delta.get("reasoning_content")
    reasoning = reasoning if isinstance(reasoning, str) else delta.get("reasoning")
    if isinstance(reasoning, str):
        answer.reasoning += reasoning
    for position, call in enumerate(delta.get("tool_calls") or ()):
        entry = answer.call(call.get("index", position))  # Mistral sends no index
        entry["id"] = entry["id"] or call.get("id")
        function = _dict(call.get("function"))
        entry["name"] += function.get("name") or ""
        entry["arguments"] += function.get("arguments") or ""


def _error_of(error: object) -> dict:
    if not isinstance(error, dict):
        return {"message": str(error), "status": None}
    declared = next((_int(error.get(k)) for k in ("status_code", "status", "code") if _int(error.get(k))), None)
    return {"message": str(error.get("message") or error.get("type") or ""), "status": declared}


def fold_anthropic_events(body: bytes) -> Answer:
    """Anthropic Messages events -> the OpenAI answer the gateway must turn them into."""
    answer, usage, tool_blocks = Answer(), {}, {}
    for name, data in sse_events(body):
        event = _json(data)
        kind = event.get("type")
        if name == "error" or kind == "error":
            answer.error = _error_of(event.get("error"))
            return answer
        if kind == "message_start":
            usage.update(_counts(_dict(event.get("message")).get("usage")))
        elif kind == "content_block_start" and _dict(event.get("content_block")).get("type") == "tool_use":
            block = event["content_block"]
            tool_blocks[event["index"]] = entry = answer.call(len(tool_blocks))
            entry.update(id=block.get("id"), name=block.get("name") or "")
        elif kind == "content_block_delta":
            _fold_anthropic_delta(answer, _dict(event.get("delta")), tool_blocks.get(event.get("index")))
        elif kind == "message_delta":
            usage.update(_counts(event.get("usage")))  # cumulative: later counts replace earlier ones
            stop = _dict(event.get("delta")).get("stop_reason")
            answer.finish_reason = ANTHROPIC_FINISH.get(stop, "stop") if stop else answer.finish_reason
    for entry in answer.calls.values():
        entry["arguments"] = entry["arguments"] or "{}"  # a tool called with no input still gets an object
    answer.usage = _anthropic_usage(usage)
    return answer


def _fold_anthropic_delta(answer: Answer, delta: dict, tool_call: dict | None) -> None:
    if delta.get("type") == "text_delta":
        answer.text += delta.get("text") or ""
    elif delta.get("type") == "input_json_delta" and tool_call is not None:
        tool_call["arguments"] += delta.get("partial_json") or ""


def _counts(usage: object) -> dict:
    return {k: v for k, v in _dict(usage).items() if _int(v) is not None}


def _anthropic_usage(usage: dict) -> Usage:
    read, write = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
    prompt = usage.get("input_tokens", 0) + read + write
    return Usage(prompt, usage.get("output_tokens", 0), prompt + usage.get("output_tokens", 0), read, write)


def recorded_answer(recording: Recording) -> Answer:
    if recording.provider == "anthropic":
        return fold_anthropic_events(recording.body)
    return fold_chat_chunks(_json(data) for _event, data in sse_events(recording.body) if data != "[DONE]")


def recorded_error_message(recording: Recording) -> str:
    """The human message of a recorded error body, whichever shape the provider uses."""
    body = _json(recording.response["body"])
    error = body.get("error")
    return str(_dict(error).get("message") or error or body.get("message") or "")


# --- driving the gateway -------------------------------------------------------------------------


@dataclass
class Seen:
    """What the client got from one call."""

    status: int
    chunks: list[dict] = field(default_factory=list)
    error_message: str | None = None
    error_body: object = None

    def answer(self) -> Answer:
        return fold_chat_chunks(self.chunks)


def call_gateway(client: openai.OpenAI, model: str) -> Seen:
    chunks: list[dict] = []
    try:
        stream = client.chat.completions.create(model=model, messages=ASK, stream=True,
                                                stream_options={"include_usage": True})
        for chunk in stream:
            chunks.append(chunk.to_dict())
    except openai.APIStatusError as exc:  # refused before the stream began: a plain HTTP error
        return Seen(exc.status_code, chunks, exc.message, exc.body)
    except openai.APIError as exc:  # an error event in the stream, after a 200
        return Seen(200, chunks, exc.message, exc.body)
    return Seen(200, chunks)


@dataclass(frozen=True)
class RouteUnderTest:
    provider: str  # the gateway provider the recording is replayed through
    model: str

    @property
    def client_model(self) -> str:
        return f"{self.provider}/{self.model}"


def route_for(recording: Recording) -> RouteUnderTest:
    """The provider's own entry; DeepSeek, until it has one, through `local` (any OpenAI-compatible host)."""
    provider = recording.provider if recording.provider in PROVIDERS else "local"
    return RouteUnderTest(provider, recording.upstream_model())


def gateway_env(route: RouteUnderTest, upstream: ReplayServer, prices_file: Path) -> dict[str, str]:
    base_path = urlsplit(PROVIDERS[route.provider].default_base_url or "").path.rstrip("/")
    if route.provider == "local":
        base_path = ""  # DeepSeek serves /chat/completions at its root
    prefix = PROVIDERS[route.provider].env_prefix
    return {f"{prefix}_BASE_URL": upstream.url(base_path), f"{prefix}_API_KEY": REPLAY_KEY,
            "SWITCHBOARD_PRICES": str(prices_file), "SWITCHBOARD_MAX_RETRIES": "0"}


def write_prices(tmp_path: Path, route: RouteUnderTest) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {route.client_model: PRICE}}))
    return path


@dataclass
class Replay:
    recording: Recording
    route: RouteUnderTest
    seen: list[tuple[Cuts, Seen]]  # one call per set of cuts
    records: list[CallRecord]
    upstream_requests: list[UpstreamRequest]


REPLAYS: dict[str, Replay] = {}  # each recording is replayed once per run; several tests read the result


@pytest.fixture
def replay(request, start_gateway, tmp_path) -> Replay:
    """The recording replayed once per set of cuts, through one gateway."""
    recording: Recording = request.param
    if recording.name not in REPLAYS:
        REPLAYS[recording.name] = run_replay(recording, start_gateway, tmp_path)
    return REPLAYS[recording.name]


def run_replay(recording: Recording, start_gateway, tmp_path: Path) -> Replay:
    route = route_for(recording)
    with ReplayServer(recording.replayed()) as upstream:
        gateway = start_gateway(**gateway_env(route, upstream, write_prices(tmp_path, route)))
        client = gateway.client()
        seen = []
        for cuts in recording.cuts():
            upstream.cuts = cuts
            seen.append((cuts, call_gateway(client, route.client_model)))
        return Replay(recording, route, seen, list(gateway.records), list(upstream.requests))


def by_kind(*, stream_ok: bool) -> list:
    chosen = [r for r in RECORDINGS if (r.is_stream and recorded_answer(r).error is None) == stream_ok]
    return [pytest.param(r, id=r.name) for r in chosen]


# --- the checks ----------------------------------------------------------------------------------


def test_every_recording_says_where_it_came_from():
    assert len({r.provider for r in RECORDINGS}) >= 6
    for recording in RECORDINGS:
        source = recording.source
        assert source.get("repository") and source.get("path"), recording.name
        assert len(source.get("commit", "")) == 40 or source.get("doc_url"), recording.name
        assert recording.body, recording.name


@pytest.mark.parametrize("replay", by_kind(stream_ok=True), indirect=True)
def test_recorded_stream_reaches_the_client_as_recorded(replay: Replay):
    expected = recorded_answer(replay.recording)
    for cuts, seen in replay.seen:
        where = f"{replay.recording.name}, cut {cuts.name}"
        assert seen.status == 200 and seen.error_message is None, f"{where}: {seen.error_message}"
        got = seen.answer()
        assert got.text == expected.text, where
        if replay.recording.provider != "anthropic":  # Anthropic thinking is not part of the contract yet
            assert got.reasoning == expected.reasoning, f"{where}: reasoning deltas not relayed as they came"
        assert got.tool_calls == expected.tool_calls, where
        assert got.finish_reason == expected.finish_reason, where
        assert got.usage is not None, f"{where}: no usage chunk reached the client"
        assert (got.usage.prompt, got.usage.completion) == (expected.usage.prompt, expected.usage.completion), where
        assert (got.usage.cached or 0) == (expected.usage.cached or 0), where


@pytest.mark.parametrize("replay", by_kind(stream_ok=True), indirect=True)
def test_recorded_stream_leaves_the_call_record_it_describes(replay: Replay):
    expected = recorded_answer(replay.recording)
    assert len(replay.records) == len(replay.seen) == len(replay.upstream_requests)
    for record in replay.records:
        where = replay.recording.name
        assert (record.status, record.provider, record.model) == (200, replay.route.provider, replay.route.model)
        assert record.outcome == expected.finish_reason, where
        assert record.tool_calls == [call["name"] for call in expected.tool_calls], where
        assert (record.prompt_tokens, record.completion_tokens) == (expected.usage.prompt, expected.usage.completion), (
            f"{where}: usage not read into the record")
        assert (record.cached_tokens or 0) == (expected.usage.cached or 0), where
        assert not record.usage_estimated, where
        expected_cost = 0.0 if replay.route.provider in FREE_PROVIDERS else expected.usage.cost()
        assert record.cost_usd == pytest.approx(expected_cost, abs=1e-10), f"{where}: priced wrong"


@pytest.mark.parametrize("replay", by_kind(stream_ok=False), indirect=True)
def test_recorded_error_reaches_the_client_and_the_record(replay: Replay):
    recording = replay.recording
    if recording.is_stream:
        error = recorded_answer(recording).error
        message, declared = error["message"], error["status"]
    else:
        message, declared = recorded_error_message(recording), recording.status
    status = declared if declared and 400 <= declared < 500 else 502  # the upstream's 4xx, else a gateway error
    assert len(replay.records) == len(replay.seen) == len(replay.upstream_requests)
    for (cuts, seen), record in zip(replay.seen, replay.records, strict=True):
        where = f"{recording.name}, cut {cuts.name}"
        assert seen.error_message is not None, f"{where}: the client saw no error"
        assert message in seen.error_message, f"{where}: {seen.error_message!r}"
        if seen.status != 200:
            assert seen.status == status, where
        else:  # the stream had begun: the status can only travel in the error event
            assert str(status) in json.dumps(seen.error_body), f"{where}: {seen.error_body!r} lacks {status}"
        assert record.status == status, where
        assert message in (record.error or ""), where


@pytest.mark.parametrize("replay", [p for p in by_kind(stream_ok=False) if p.values[0].is_stream], indirect=True)
def test_what_came_before_an_in_stream_error_reaches_the_client(replay: Replay):
    expected = recorded_answer(replay.recording)
    for cuts, seen in replay.seen:
        got = seen.answer()
        where = f"{replay.recording.name}, cut {cuts.name}"
        assert (got.text, got.tool_calls) == (expected.text, expected.tool_calls), where
        assert got.reasoning == expected.reasoning, f"{where}: reasoning deltas not relayed as they came"
