"""A hostile upstream behind the gateway, over real sockets: what a caller in front can still count on.

Each test scripts a raw HTTP/1.1 upstream (tests/hostile_upstream.py) that breaks the protocol in one
way, puts a real gateway in front of it and a real client (httpx or the official OpenAI SDK) in front of
that, then checks what the caller sees: their own answer and no one else's, an OpenAI error body or an
error event instead of a hang, a cut stream or a plain-text 500; and what the ledger records.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from tests.conftest import CALLER_KEY, GATEWAY_KEY, LOGS, OPENAI_KEY
from tests.hostile_upstream import (
    LAST_CHUNK,
    SSE_HEAD,
    HostileUpstream,
    Peer,
    ReceivedRequest,
    Stopwatch,
    answer_each,
    answer_to,
    chat_chunk,
    chunk,
    close_without_answer,
    completion,
    honest,
    http_response,
    json_response,
    send,
    sse,
    stream_events,
    streamed_answer,
    wait_until,
)

AUTH = {"authorization": f"Bearer {GATEWAY_KEY}"}
MODEL = "openai/gpt-x"
FALLBACK = {"x-switchboard-fallbacks": "simulator/echo"}
SIMULATED = "(simulated)"  # how every simulator answer starts: the fallback answered
MIB = 1024 * 1024


@pytest.fixture
def hostile():
    """Factory: a started HostileUpstream running the given per-connection scripts; stopped afterwards."""
    started: list[HostileUpstream] = []

    def start(*scripts) -> HostileUpstream:
        upstream = HostileUpstream(*scripts).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()


def gateway_before(start_gateway, upstream: HostileUpstream, **env: str):
    """A gateway whose `openai` provider is the hostile upstream."""
    return start_gateway(OPENAI_BASE_URL=upstream.base_url, **env)


def ask(gateway, message: str = "hi", *, stream: bool = False, headers: dict | None = None,
        within_s: float = 10.0) -> httpx.Response:
    """One chat call as a caller makes it; a gateway that has not answered within `within_s` fails the test."""
    try:
        return httpx.post(gateway.base_url + "/chat/completions", timeout=within_s,
                          headers={**AUTH, **(headers or {})},
                          json={"model": MODEL, "messages": [{"role": "user", "content": message}],
                                "stream": stream})
    except httpx.TimeoutException:
        pytest.fail(f"the gateway gave the caller nothing for {within_s} s")


def data_events(response: httpx.Response) -> list[bytes]:
    """The payload of every `data:` event in a streamed response, in order."""
    return [event[6:] for event in response.content.split(b"\n\n") if event.startswith(b"data: ")]


def streamed_text(response: httpx.Response) -> str:
    text = []
    for payload in data_events(response):
        if payload.startswith(b"{"):
            for choice in json.loads(payload).get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def answer_of(response: httpx.Response) -> str:
    """The assistant's text, streamed or not."""
    assert response.status_code == 200, response.text[:500]
    if response.headers["content-type"].startswith("application/json"):
        return response.json()["choices"][0]["message"]["content"]
    return streamed_text(response)


def assert_openai_error(response: httpx.Response, status: int = 502) -> dict:
    """An OpenAI error body (JSON, the four fields) with `status`: never plain text, never a cut."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json"), response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def assert_ended_with_error_event(response: httpx.Response) -> dict:
    """A stream that ends, cleanly framed, with an error event and then [DONE]."""
    assert response.status_code == 200, response.text[:500]
    assert response.content.endswith(b"\n\n"), response.content[-200:]
    events = data_events(response)
    assert len(events) >= 2 and events[-1] == b"[DONE]", response.content[-300:]
    return json.loads(events[-2])["error"]


def assert_recorded_as_upstream_failure(gateway, status: int = 502) -> None:
    record = gateway.records[-1]
    assert record.status == status, (record.status, record.outcome, record.error)
    assert record.outcome != "client_disconnected", record.error
    assert record.outcome != "internal_error", record.error


def assert_upstream_error_then_fallback(gateway, stream: bool) -> None:
    """Before the first byte the failure is a 502 JSON error, and with a fallback the fallback answers."""
    assert_openai_error(ask(gateway, stream=stream))
    assert_recorded_as_upstream_failure(gateway)
    assert answer_of(ask(gateway, stream=stream, headers=FALLBACK)).startswith(SIMULATED)
    record = gateway.records[-1]
    assert record.provider == "simulator" and record.status == 200
    assert record.attempts[0]["provider"] == "openai" and record.attempts[0]["outcome"] != "ok"
    assert record.attempts[-1]["outcome"] == "ok"


STREAM_OR_NOT = pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])


# --- 1. No caller ever receives bytes meant for another request ------------------------------------------


def poison(request: ReceivedRequest) -> bytes:
    """A complete second response nobody asked for, in the same framing as the real one."""
    if request.payload.get("stream"):
        return streamed_answer("POISON meant for nobody")
    return json_response(completion("POISON meant for nobody"))


async def answer_then_poison_at_once(peer: Peer, request: ReceivedRequest) -> None:
    await peer.send(honest(request) + poison(request))  # one write: it lands with the answer


async def answer_then_poison_later(peer: Peer, request: ReceivedRequest) -> None:
    await peer.send(honest(request))
    await asyncio.sleep(0.05)  # arrives while the connection sits idle in the gateway's pool
    await peer.send(poison(request))


@STREAM_OR_NOT
@pytest.mark.parametrize("extra", [answer_then_poison_at_once, answer_then_poison_later], ids=["at-once", "later"])
def test_bytes_beyond_a_response_never_answer_the_next_caller(start_gateway, hostile, stream, extra):
    upstream = hostile(answer_each(extra, send(honest)))
    gateway = gateway_before(start_gateway, upstream)
    client = gateway.client()
    for caller in range(3):
        messages = [{"role": "user", "content": f"caller-{caller}"}]
        if stream:
            parts = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
            said = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        else:
            said = client.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content
        assert said == f"answer to caller-{caller}"
        assert gateway.records[-1].status == 200
        time.sleep(0.15)  # the late extra bytes have landed before the next caller comes
    assert [r.last_message for r in upstream.requests] == ["caller-0", "caller-1", "caller-2"]


async def answer_then_idle_408(peer: Peer, request: ReceivedRequest) -> None:
    """Answer, then, while the connection idles, an unsolicited 408 as some hosts send before closing."""
    await peer.send(honest(request))
    await asyncio.sleep(0.05)
    await peer.send(http_response(408, b"", [("connection", "close")], reason="Request Timeout"))
    peer.close()


async def answer_then_idle_408_left_open(peer: Peer, request: ReceivedRequest) -> None:
    """The same 408, but the host keeps the socket open and answers what comes next on it."""
    await peer.send(honest(request))
    await asyncio.sleep(0.05)
    await peer.send(http_response(408, b"", reason="Request Timeout"))


async def timeout_408(peer: Peer, request: ReceivedRequest) -> None:
    """A 408 crossing the request on the wire: the host had timed the idle connection out."""
    await peer.send(http_response(408, b"", [("connection", "close")], reason="Request Timeout"))
    peer.close()


@STREAM_OR_NOT
@pytest.mark.parametrize("first_connection", [
    answer_each(answer_then_idle_408),
    answer_each(answer_then_idle_408_left_open, send(honest)),
    answer_each(send(honest), timeout_408),
], ids=["408-while-idle-then-close", "408-while-idle-kept-open", "408-crossing-the-next-request"])
def test_an_unsolicited_408_is_not_the_next_callers_answer(start_gateway, hostile, stream, first_connection):
    upstream = hostile(first_connection, answer_each(send(honest)))
    gateway = gateway_before(start_gateway, upstream, SWITCHBOARD_MAX_RETRIES="0")  # only the fresh retry
    assert answer_of(ask(gateway, "caller-0", stream=stream)) == "answer to caller-0"
    time.sleep(0.2)  # the 408 is on the wire before the next caller comes
    assert answer_of(ask(gateway, "caller-1", stream=stream)) == "answer to caller-1"
    assert gateway.records[-1].status == 200 and len(gateway.records[-1].attempts) == 1
    assert upstream.requests[-1].connection >= 1  # answered on a fresh connection


async def answer_then_close_while_idle(peer: Peer, request: ReceivedRequest) -> None:
    await peer.send(honest(request))
    await asyncio.sleep(0.05)
    peer.close()


@STREAM_OR_NOT
@pytest.mark.parametrize("first_connection", [
    answer_each(answer_then_close_while_idle),
    answer_each(send(honest), close_without_answer),
], ids=["closed-while-idle", "closed-as-the-request-arrived"])
def test_a_keep_alive_connection_the_host_closed_is_retried_fresh(start_gateway, hostile, stream, first_connection):
    upstream = hostile(first_connection, answer_each(send(honest)))
    gateway = gateway_before(start_gateway, upstream, SWITCHBOARD_MAX_RETRIES="0")
    assert answer_of(ask(gateway, "caller-0", stream=stream)) == "answer to caller-0"
    time.sleep(0.2)
    assert answer_of(ask(gateway, "caller-1", stream=stream)) == "answer to caller-1"
    assert gateway.records[-1].status == 200 and len(gateway.records[-1].attempts) == 1
    assert upstream.connections == 2


# --- 2. Memory and CPU are bounded ----------------------------------------------------------------------


async def absurd_chunk_size_then_flood(peer: Peer, request: ReceivedRequest) -> None:
    """A chunk declared 2^64-1 bytes long, then 100 MiB of it as fast as it is taken, then silence."""
    await peer.send(SSE_HEAD.replace(b"text/event-stream", b"application/json") + b"ffffffffffffffff\r\n")
    await peer.flood(b"{" * 65536, 100 * MIB)
    await peer.hold(20)


@STREAM_OR_NOT
def test_an_absurd_chunk_size_is_an_upstream_error_with_bounded_memory(start_gateway, hostile, stream):
    upstream = hostile(answer_each(absurd_chunk_size_then_flood))
    gateway = gateway_before(start_gateway, upstream)
    started = Stopwatch()
    assert_upstream_error_then_fallback(gateway, stream)
    assert started.seconds < 8  # not the 30 s read timeout
    peer = upstream.peers[0]
    assert peer.client_gone.wait(5), "the gateway kept reading a chunk that never ends"
    # Streamed, one event is capped at 1 MiB; a plain completion at far less than the 100 MiB sent.
    bound = 16 * MIB if stream else 64 * MIB
    assert peer.bytes_sent < bound, f"the gateway took {peer.bytes_sent / MIB:.1f} MiB of one chunk"


async def huge_error_body(peer: Peer, request: ReceivedRequest) -> None:
    """A 400 declaring (and sending, as fast as it is taken) a 50 MB error body."""
    size = 50 * MIB
    opening = b'{"error": {"message": "no such model ' + b"x" * 60 * 1024
    head = http_response(400, b"", [("content-type", "application/json"), ("content-length", str(size))],
                         reason="Bad Request", content_length=False)
    await peer.send(head + opening)
    await peer.flood(b"x" * 65536, size)
    await peer.hold(20)


@STREAM_OR_NOT
def test_at_most_64_kib_of_an_error_body_is_read(start_gateway, hostile, stream):
    upstream = hostile(answer_each(huge_error_body))
    gateway = gateway_before(start_gateway, upstream)
    started = Stopwatch()
    error = assert_openai_error(ask(gateway, stream=stream), 400)
    assert started.seconds < 5
    assert "no such model" in error["message"] and len(error["message"]) < 4096
    peer = upstream.peers[0]
    assert peer.client_gone.wait(5), "the gateway kept the connection to a 50 MB error body open"
    # What the kernel took from the host before the gateway hung up: the 64 KiB read plus socket buffers,
    # not the body the host declared.
    assert peer.bytes_sent < 16 * MIB, f"the gateway let the host send {peer.bytes_sent / MIB:.1f} MiB"


def endless_event(after: list[bytes]):
    """A stream whose next event never ends: 3 MiB of one `data:` line, then silence."""

    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        await peer.send(SSE_HEAD + b"".join(chunk(event) for event in after)
                        + chunk(b'data: {"choices": [{"index": 0, "delta": {"content": "'))
        sent_before = peer.bytes_sent
        while peer.bytes_sent - sent_before < 3 * MIB:
            if not await peer.send(chunk(b"a" * 16384)):
                return
        await peer.hold(20)

    return respond


def oversized_event(after: list[bytes]):
    """A stream with one complete but 2 MiB event, then a proper ending."""
    content = "a" * (2 * MIB)
    body = b"".join(chunk(event) for event in after) + chunk(sse(chat_chunk(content)))
    body += chunk(sse(chat_chunk(finish="stop"))) + chunk(b"data: [DONE]\n\n") + LAST_CHUNK
    return send(SSE_HEAD + body)


FIRST_TOKEN = [sse(chat_chunk(role="assistant", content="")), sse(chat_chunk("Hello"))]


@pytest.mark.parametrize("make", [endless_event, oversized_event], ids=["never-terminated", "terminated"])
def test_one_sse_event_is_capped_at_1_mib_before_the_first_token(start_gateway, hostile, make):
    gateway = gateway_before(start_gateway, hostile(answer_each(make([sse(chat_chunk(role="assistant"))]))))
    started = Stopwatch()
    assert_upstream_error_then_fallback(gateway, stream=True)
    assert started.seconds < 8


@pytest.mark.parametrize("make", [endless_event, oversized_event], ids=["never-terminated", "terminated"])
def test_one_sse_event_is_capped_at_1_mib_after_the_first_token(start_gateway, hostile, make):
    gateway = gateway_before(start_gateway, hostile(answer_each(make(FIRST_TOKEN))))
    started = Stopwatch()
    response = ask(gateway, stream=True)
    assert started.seconds < 5
    assert_ended_with_error_event(response)
    assert streamed_text(response) == "Hello" and len(response.content) < 64 * 1024
    assert_recorded_as_upstream_failure(gateway)


async def flood_of_tiny_chunks(peer: Peer, request: ReceivedRequest) -> None:
    """A first token, then keep-alive comments one byte to a chunk, as fast as the socket takes them.

    Comments, not one endless event: the 1 MiB event cap would end that within ~2 s, and the flood must
    outlast the test's timings by far, so that a loop it held would fail them many times over."""
    tiny = b"".join(b"1\r\n" + bytes([byte]) + b"\r\n" for byte in b": ping\n\n")
    await peer.send(SSE_HEAD + b"".join(chunk(event) for event in FIRST_TOKEN))
    await peer.flood(tiny * 1024, 200 * MIB)
    await peer.hold(20)


async def comment_flood(peer: Peer, request: ReceivedRequest) -> None:
    """A first token, then keep-alive comments as fast as the socket takes them, each its own chunk."""
    await peer.send(SSE_HEAD + b"".join(chunk(event) for event in FIRST_TOKEN))
    await peer.flood(chunk(b": ping\n\n") * 4096, 200 * MIB)
    await peer.hold(20)


async def trickle_forever(peer: Peer, request: ReceivedRequest) -> None:
    """A first token, then a byte every 10 ms of an event that never ends."""
    await peer.send(SSE_HEAD + b"".join(chunk(event) for event in FIRST_TOKEN))
    await peer.trickle((chunk(b"a") for _ in range(3000)), gap_s=0.01)


@pytest.mark.parametrize("misbehaviour", [flood_of_tiny_chunks, comment_flood, trickle_forever],
                         ids=["tiny-chunk-flood", "comment-flood", "trickle"])
def test_health_and_other_callers_stay_fast_while_an_upstream_misbehaves(start_gateway, hostile, misbehaviour):
    upstream = hostile(answer_each(misbehaviour))
    gateway = gateway_before(start_gateway, upstream)
    victim = threading.Thread(target=_ask_quietly, args=(gateway,), daemon=True)
    victim.start()
    assert wait_until(lambda: upstream.peers and upstream.peers[0].bytes_sent > 0)
    time.sleep(0.3)  # the misbehaviour is in full swing
    health = []
    with httpx.Client(timeout=10) as client:  # one client: time the gateway, not TLS context set-up
        for _ in range(10):
            started = Stopwatch()
            assert client.get(gateway.url + "/health").status_code == 200
            health.append(started.seconds)
        started = Stopwatch()
        simulated = client.post(gateway.base_url + "/chat/completions", headers=AUTH,
                                json={"model": "simulator/echo", "stream": True,
                                      "messages": [{"role": "user", "content": "hi"}]})
        other_caller = started.seconds
    assert streamed_text(simulated).startswith(SIMULATED)
    # Generous: the flood, the gateway and this client share one process (and its GIL) on a busy machine, where
    # the median is ~0.15 s, the slowest ~0.5 s and the other call ~1 s. A loop held by the misbehaviour, which
    # lasts until the victim gives up at 30 s, would keep them waiting far longer than these bounds.
    assert sorted(health)[5] < 0.5 and max(health) < 2.0, f"/health took {health} s"
    assert other_caller < 3.0, f"another caller's whole call took {other_caller:.2f} s"
    upstream.stop()
    victim.join(10)


def _ask_quietly(gateway) -> None:
    """The misbehaving upstream's own caller: whatever it gets, it just reads."""
    try:
        httpx.post(gateway.base_url + "/chat/completions", headers=AUTH, timeout=30,
                   json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    except httpx.HTTPError:
        pass


# --- 3. The total deadline holds after the first token ------------------------------------------------


async def pings_after_the_first_token(peer: Peer, request: ReceivedRequest) -> None:
    await peer.send(SSE_HEAD + b"".join(chunk(event) for event in FIRST_TOKEN))
    await peer.trickle((chunk(b": ping\n\n") for _ in range(200)), gap_s=0.1)


async def a_byte_a_second_after_the_first_token(peer: Peer, request: ReceivedRequest) -> None:
    await peer.send(SSE_HEAD + b"".join(chunk(event) for event in FIRST_TOKEN))
    await peer.trickle((chunk(byte.to_bytes(1, "big")) for byte in b'data: {"choices": []}' * 10), gap_s=1.0)


@pytest.mark.parametrize("upstream_script", [pings_after_the_first_token, a_byte_a_second_after_the_first_token],
                         ids=["ping-comments", "byte-a-second"])
def test_the_total_deadline_holds_after_the_first_token(start_gateway, hostile, upstream_script):
    gateway = gateway_before(start_gateway, hostile(answer_each(upstream_script)))
    started = Stopwatch()
    response = ask(gateway, stream=True, headers={"x-switchboard-timeout-ms": "1000"})
    assert 0.9 <= started.seconds < 3.0, f"the 1000 ms deadline ended the call after {started.seconds:.2f} s"
    error = assert_ended_with_error_event(response)
    assert error["code"] == "timeout" and streamed_text(response) == "Hello"
    record = gateway.records[-1]
    assert record.status == 504 and record.outcome == "timeout"


# --- 4 and 9. Anything unexpected from an upstream is an upstream error ----------------------------------


def body_for(request: ReceivedRequest) -> bytes:
    """A correct answer body for the request (SSE events or a completion), without any framing."""
    if request.payload.get("stream"):
        return b"".join(stream_events(answer_to(request)))
    return json.dumps(completion(answer_to(request))).encode()


def content_type(request: ReceivedRequest) -> str:
    return "content-type: " + ("text/event-stream" if request.payload.get("stream") else "application/json")


def chunked_head(request: ReceivedRequest, status: str = "200") -> bytes:
    return f"HTTP/1.1 {status} OK\r\n{content_type(request)}\r\ntransfer-encoding: chunked\r\n\r\n".encode()


def with_length(length: str, status: str = "200"):
    """A correct body under a head declaring the given Content-Length text."""
    def frame(request: ReceivedRequest) -> bytes:
        return (f"HTTP/1.1 {status} OK\r\n{content_type(request)}\r\ncontent-length: {length}\r\n\r\n".encode()
                + body_for(request))
    return frame


def duplicate_differing_lengths(request: ReceivedRequest) -> bytes:
    body = body_for(request)
    return (f"HTTP/1.1 200 OK\r\n{content_type(request)}\r\ncontent-length: {len(body)}\r\n"
            f"content-length: {len(body) + 1}\r\n\r\n").encode() + body


def length_and_chunked(request: ReceivedRequest) -> bytes:
    body = chunk(body_for(request)) + LAST_CHUNK
    return (f"HTTP/1.1 200 OK\r\n{content_type(request)}\r\ncontent-length: {len(body)}\r\n"
            "transfer-encoding: chunked\r\n\r\n").encode() + body


def negative_chunk_size(request: ReceivedRequest) -> bytes:
    return chunked_head(request) + b"-5\r\n" + body_for(request) + b"\r\n" + LAST_CHUNK


def bad_chunk_terminator(request: ReceivedRequest) -> bytes:
    body = body_for(request)
    return chunked_head(request) + f"{len(body):x}\r\n".encode() + body + b"XX" + LAST_CHUNK


def status_000(request: ReceivedRequest) -> bytes:
    return with_length(str(len(body_for(request))), status="000")(request)


BAD_FRAMING = {
    "content-length-not-a-number": with_length("abc"),
    "negative-content-length": with_length("-1"),
    "differing-duplicate-content-length": duplicate_differing_lengths,
    "content-length-with-chunked": length_and_chunked,
    "negative-chunk-size": negative_chunk_size,
    "bad-chunk-terminator": bad_chunk_terminator,
    "status-000": status_000,
}


@STREAM_OR_NOT
@pytest.mark.parametrize("frame", BAD_FRAMING.values(), ids=BAD_FRAMING.keys())
def test_bad_framing_is_an_upstream_error(start_gateway, hostile, stream, frame):
    # The host closes after its answer, so a client that guessed at the framing would still "succeed".
    gateway = gateway_before(start_gateway, hostile(answer_each(send(frame, then_close=True))))
    assert_upstream_error_then_fallback(gateway, stream)


def with_chunk(base: dict, **changes: object) -> dict:
    return {**base, **changes}


CONTENT = chat_chunk("x")
BAD_CHUNKS = {
    "usage-is-a-number": with_chunk(CONTENT, usage=5),
    "delta-is-a-string": with_chunk(CONTENT, choices=[{"index": 0, "delta": "x", "finish_reason": None}]),
    "choices-is-a-string": with_chunk(CONTENT, choices="x"),
    "choice-is-a-number": with_chunk(CONTENT, choices=[5]),
    "tool-calls-is-a-number": with_chunk(CONTENT, choices=[{"index": 0, "delta": {"tool_calls": 5}}]),
    "tool-call-is-a-number": with_chunk(CONTENT, choices=[{"index": 0, "delta": {"tool_calls": [5]}}]),
}


def stream_with(events: list[bytes]) -> bytes:
    return SSE_HEAD + b"".join(chunk(event) for event in events) + LAST_CHUNK


ENDING = [sse(chat_chunk(finish="stop")), b"data: [DONE]\n\n"]


@pytest.mark.parametrize("bad", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_a_chunk_of_the_wrong_shape_before_the_first_token_is_an_upstream_error(start_gateway, hostile, bad):
    events = [sse(chat_chunk(role="assistant", content="")), sse(bad), sse(chat_chunk("Hello")), *ENDING]
    gateway = gateway_before(start_gateway, hostile(answer_each(send(stream_with(events)))))
    assert_upstream_error_then_fallback(gateway, stream=True)


@pytest.mark.parametrize("bad", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_a_chunk_of_the_wrong_shape_after_the_first_token_ends_the_stream_with_an_error(start_gateway, hostile, bad):
    gateway = gateway_before(start_gateway, hostile(answer_each(send(stream_with([*FIRST_TOKEN, sse(bad),
                                                                                   *ENDING])))))
    response = ask(gateway, stream=True)
    assert_ended_with_error_event(response)
    assert streamed_text(response) == "Hello"
    assert_recorded_as_upstream_failure(gateway)


BAD_COMPLETIONS = {
    "message-is-a-string": {**completion("x"), "choices": [{"index": 0, "message": "x", "finish_reason": "stop"}]},
    "tool-calls-is-a-number": {**completion("x"), "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "x", "tool_calls": 5}, "finish_reason": "stop"}]},
    "choices-is-a-string": {**completion("x"), "choices": "x"},
}


@pytest.mark.parametrize("bad", BAD_COMPLETIONS.values(), ids=BAD_COMPLETIONS.keys())
def test_a_completion_of_the_wrong_shape_is_an_upstream_error(start_gateway, hostile, bad):
    gateway = gateway_before(start_gateway, hostile(answer_each(send(json_response(bad)))))
    assert_upstream_error_then_fallback(gateway, stream=False)


async def interim_responses_first(peer: Peer, request: ReceivedRequest) -> None:
    await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n" + honest(request))


@STREAM_OR_NOT
def test_interim_1xx_responses_are_skipped(start_gateway, hostile, stream):
    gateway = gateway_before(start_gateway, hostile(answer_each(interim_responses_first)))
    for caller in ("caller-0", "caller-1"):  # the 1xx were consumed whole: the connection stays in step
        assert answer_of(ask(gateway, caller, stream=stream)) == f"answer to {caller}"


# --- 8. Keys are scrubbed from upstream error text -------------------------------------------------------


def echoing_the_key(status: int, as_json: bool):
    """A host that quotes the Authorization header it received back in its error message."""

    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        said = request.header("authorization") or ""
        text = f"Incorrect API key provided: {said} (key {said.removeprefix('Bearer ')})."
        if as_json:
            body = json.dumps({"error": {"message": text, "type": "invalid_request_error"}}).encode()
            await peer.send(http_response(status, body, [("content-type", "application/json")]))
        else:
            await peer.send(http_response(status, text.encode(), [("content-type", "text/plain")]))

    return respond


WHOSE_KEY = pytest.mark.parametrize("key", [OPENAI_KEY, CALLER_KEY], ids=["gateway-key", "caller-key"])


def caller_headers(key: str) -> dict[str, str]:
    return {"x-inference-provider-api-key": CALLER_KEY} if key == CALLER_KEY else {}


def assert_key_nowhere(key: str, gateway, response: httpx.Response, logs_from: int) -> None:
    assert key not in response.text and key not in str(response.headers)
    assert key not in repr(gateway.records[-1].to_dict())
    assert not [line for line in LOGS.lines[logs_from:] if key in line]


@WHOSE_KEY
@pytest.mark.parametrize("status", [400, 401, 500])
@pytest.mark.parametrize("as_json", [True, False], ids=["json-body", "text-body"])
def test_keys_are_scrubbed_from_an_upstream_error_response(start_gateway, hostile, key, status, as_json):
    upstream = hostile(answer_each(echoing_the_key(status, as_json)))
    gateway = gateway_before(start_gateway, upstream)
    logs_from = len(LOGS.lines)
    response = ask(gateway, stream=True, headers=caller_headers(key))
    assert upstream.requests[-1].header("authorization") == f"Bearer {key}"  # the host did get the key
    error = assert_openai_error(response, status if status < 500 else 502)
    assert "Incorrect API key provided" in error["message"]  # the reason survives; only the key goes
    assert_key_nowhere(key, gateway, response, logs_from)


def mid_stream_error_quoting_the_key(after: list[bytes]):
    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        said = request.header("authorization") or ""
        error = sse({"error": {"message": f"stream failed for {said}", "type": "server_error"}})
        await peer.send(stream_with([*after, error]))

    return respond


@WHOSE_KEY
@pytest.mark.parametrize("after", [[sse(chat_chunk(role="assistant"))], FIRST_TOKEN],
                         ids=["before-the-first-token", "after-the-first-token"])
def test_keys_are_scrubbed_from_a_mid_stream_error(start_gateway, hostile, key, after):
    upstream = hostile(answer_each(mid_stream_error_quoting_the_key(after)))
    gateway = gateway_before(start_gateway, upstream)
    logs_from = len(LOGS.lines)
    response = ask(gateway, stream=True, headers=caller_headers(key))
    assert upstream.requests[-1].header("authorization") == f"Bearer {key}"
    if after is FIRST_TOKEN:
        error = assert_ended_with_error_event(response)
    else:
        error = assert_openai_error(response)
    assert "stream failed for" in error["message"]
    assert_key_nowhere(key, gateway, response, logs_from)
