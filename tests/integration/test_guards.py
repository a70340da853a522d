"""The guards hold at their edges, over real sockets: streams that always end, keys that never leak in part,
completions checked as chunks are, reserved task names, and addresses that stay checked.

Each test stands for one finding of a security review against a live gateway, and fails on the code before
its fix.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.conftest import EXTRA_SECRETS, GATEWAY_KEY
from tests.hostile_upstream import (
    LAST_CHUNK,
    SSE_HEAD,
    HostileUpstream,
    Peer,
    ReceivedRequest,
    Stopwatch,
    answer_each,
    chat_chunk,
    chunk,
    completion,
    json_response,
    sse,
)

AUTH = {"authorization": f"Bearer {GATEWAY_KEY}"}
MODEL = "openai/gpt-x"


@pytest.fixture
def hostile():
    started: list[HostileUpstream] = []

    def start(*scripts) -> HostileUpstream:
        upstream = HostileUpstream(*scripts).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()


def call(gateway, path: str = "/chat/completions", *, timeout: float = 10.0, headers: dict | None = None,
         **body: object) -> httpx.Response:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
    if path == "/responses":
        payload = {"model": MODEL, "input": "hi", **body}
    return httpx.post(gateway.base_url + path, json=payload, headers={**AUTH, **(headers or {})}, timeout=timeout)


# --- every stream ends --------------------------------------------------------------------------------------


def first_token_then(framing: bytes):
    """A streamed answer whose first token arrives whole, then a chunk header the parser must refuse, and then
    nothing: the connection stays open, as a hostile or broken host leaves it."""

    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        opening = chunk(sse(chat_chunk(role="assistant", content=""))) + chunk(sse(chat_chunk("Hello")))
        await peer.send(SSE_HEAD + opening)
        await asyncio.sleep(0.2)
        await peer.send(framing)
        await asyncio.sleep(30)  # held open: only the gateway can end the caller's stream

    return respond


BROKEN_FRAMING = {"negative chunk size": b"-5\r\nhello\r\n", "not hex": b"zz\r\nhello\r\n",
                  "bad terminator": b"5\r\nhelloXX", "huge chunk size": b"ffffffffffffffffffff\r\n"}


@pytest.mark.parametrize("framing", list(BROKEN_FRAMING.values()), ids=list(BROKEN_FRAMING))
def test_broken_framing_after_the_first_token_ends_the_chat_stream_with_an_error_and_done(start_gateway, hostile,
                                                                                          framing):
    upstream = hostile(answer_each(first_token_then(framing)))
    gateway = start_gateway(OPENAI_BASE_URL=upstream.base_url, SWITCHBOARD_READ_TIMEOUT_MS="30000")
    watch = Stopwatch()

    response = call(gateway, stream=True, timeout=8)

    assert watch.seconds < 4, "the stream stayed open after the upstream broke its framing"
    events = [e[6:] for e in response.content.split(b"\n\n") if e.startswith(b"data: ")]
    assert b"Hello" in events[1]
    assert json.loads(events[-2])["error"]["type"] == "upstream_error" and events[-1] == b"[DONE]"
    record = gateway.records[-1]
    assert record.status == 502 and record.outcome == "stream_error"


@pytest.mark.parametrize("framing", list(BROKEN_FRAMING.values()), ids=list(BROKEN_FRAMING))
def test_broken_framing_after_the_first_token_ends_the_responses_stream_with_response_failed(start_gateway, hostile,
                                                                                             framing):
    upstream = hostile(answer_each(first_token_then(framing)))
    gateway = start_gateway(OPENAI_BASE_URL=upstream.base_url, SWITCHBOARD_READ_TIMEOUT_MS="30000")
    watch = Stopwatch()

    response = call(gateway, "/responses", stream=True, timeout=8)

    assert watch.seconds < 4, "the stream stayed open after the upstream broke its framing"
    events = [e for e in response.content.split(b"\n\n") if e]
    assert b"response.output_text.delta" in response.content
    assert events[-1].startswith(b"event: response.failed")


# --- a host in use stays checked ------------------------------------------------------------------------------


def test_a_host_in_use_stays_checked_however_many_other_hosts_callers_name(hostile):
    """A caller-named host connects only to the addresses the gateway checked. Ten thousand other hosts named
    meanwhile (a wildcard allowlist lets callers name as many as they like) must not drop a host still in use
    back to plain DNS, where a rebinding answer would reach a socket."""
    from switchboard.providers.transport.client import UpstreamClient
    from switchboard.providers.transport.resolver import CheckedResolver

    upstream = hostile(answer_each(lambda peer, request: peer.send(json_response(completion("checked")))))
    checked = {"tenant.example.test": ["127.0.0.1"]}  # what the gateway verified: here the test's upstream

    async def resolve_checked(host: str) -> list[str]:
        return checked.get(host, ["198.51.100.7"])

    async def scenario() -> int:
        resolver = CheckedResolver(resolve_checked, lambda address: False)
        async with UpstreamClient(2.0, 5.0, resolver=resolver) as client:
            client.require_check("tenant.example.test", upstream.port)
            for number in range(10_001):
                client.require_check(f"other-{number}.example.test", 443)
                if number % 1000 == 500:  # the tenant's own calls keep coming, each naming its host again
                    client.require_check("tenant.example.test", upstream.port)
            response = await client.post(f"http://tenant.example.test:{upstream.port}/v1/chat/completions",
                                         {"content-type": "application/json"}, b"{}")
            try:
                return response.status
            finally:
                response.close()

    # Plain DNS does not know tenant.example.test: only the checked resolution can reach the upstream.
    assert asyncio.run(scenario()) == 200
    assert upstream.requests, "the request never reached the checked address"


# --- keys never leak, not even in part ------------------------------------------------------------------------


def fragments(key: str, size: int = 8) -> set[str]:
    """Every piece of `key` of `size` characters: none may survive anywhere a caller or the ledger sees."""
    return {key[start:start + size] for start in range(len(key) - size + 1)}


def assert_no_piece_of(key: str, *texts: str | None) -> None:
    for text in texts:
        leaked = [piece for piece in fragments(key) if text and piece in text]
        assert not leaked, f"{len(leaked)} pieces of the key leaked, e.g. {leaked[0]!r}, in {text[-120:]!r}"


def across_the_cut(key: str, cut: int, inside: int) -> str:
    """Filler, then `key` starting `inside` characters before `cut`: a cut there keeps its first characters."""
    return "x" * (cut - inside) + key + " more words after the key"


def error_body_echoing(text: str, as_json: bool, status: int = 400):
    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        if as_json:
            body = json.dumps({"error": {"message": text, "type": "invalid_request_error"}}).encode()
            await peer.send(json_response(json.loads(body), status))
        else:
            raw = text.encode()
            head = b"HTTP/1.1 %d X\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % (status, len(raw))
            await peer.send(head + raw)

    return respond


KEY_CASES = pytest.mark.parametrize("key_header", [None, "caller"], ids=["operator-key", "caller-key"])


def key_under_test(key_header: str | None) -> tuple[str, dict[str, str]]:
    from tests.conftest import CALLER_KEY, OPENAI_KEY

    if key_header is None:
        return OPENAI_KEY, {}
    return CALLER_KEY, {"x-inference-provider-api-key": CALLER_KEY}


@KEY_CASES
@pytest.mark.parametrize("as_json, cut", [(True, 1000), (False, 300)], ids=["json-message", "plain-text"])
@pytest.mark.parametrize("inside", [8, 12, 20])
def test_a_key_across_the_cut_of_an_error_body_leaves_no_piece(start_gateway, hostile, key_header, as_json, cut,
                                                               inside):
    key, headers = key_under_test(key_header)
    upstream = hostile(answer_each(error_body_echoing(across_the_cut(key, cut, inside), as_json)))
    gateway = start_gateway(OPENAI_BASE_URL=upstream.base_url)

    response = call(gateway, headers=headers)

    assert response.status_code == 400, response.text
    assert_no_piece_of(key, response.text, gateway.records[-1].error)


def stream_error_echoing(text: str, after_first_token: bool):
    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        events = [sse(chat_chunk(role="assistant", content=""))]
        if after_first_token:
            events.append(sse(chat_chunk("Hello")))
        events.append(sse({"error": {"message": text, "type": "server_error"}}))
        await peer.send(SSE_HEAD + b"".join(chunk(event) for event in events) + LAST_CHUNK)

    return respond


@KEY_CASES
@pytest.mark.parametrize("after_first_token", [False, True], ids=["before-first-token", "after-first-token"])
@pytest.mark.parametrize("inside", [8, 15])
def test_a_key_across_the_cut_of_a_mid_stream_error_leaves_no_piece(start_gateway, hostile, key_header,
                                                                    after_first_token, inside):
    key, headers = key_under_test(key_header)
    upstream = hostile(answer_each(stream_error_echoing(across_the_cut(key, 1000, inside), after_first_token)))
    gateway = start_gateway(OPENAI_BASE_URL=upstream.base_url, SWITCHBOARD_MAX_RETRIES="0")

    response = call(gateway, stream=True, headers=headers)

    assert response.status_code == (200 if after_first_token else 502), response.text[:300]
    assert_no_piece_of(key, response.text, gateway.records[-1].error)


def anthropic_stream_error_echoing(text: str):
    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        start = {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {}}}
        error = {"type": "error", "error": {"type": "api_error", "message": text}}
        events = [b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n",
                  b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"]
        await peer.send(SSE_HEAD + b"".join(chunk(event) for event in events) + LAST_CHUNK)

    return respond


def test_a_key_across_the_cut_of_an_anthropic_stream_error_leaves_no_piece(start_gateway, hostile):
    key = "sk-ant-9f2c7e1b5d8a3f6c0e4b-fake"  # no word of it appears in a gateway message for other reasons
    EXTRA_SECRETS.append(key)
    upstream = hostile(answer_each(anthropic_stream_error_echoing(across_the_cut(key, 1000, 10))))
    gateway = start_gateway(ANTHROPIC_BASE_URL=upstream.url, ANTHROPIC_API_KEY=key, SWITCHBOARD_MAX_RETRIES="0")

    response = call(gateway, stream=True, model="anthropic/claude-x")

    assert response.status_code == 502, response.text[:300]
    assert_no_piece_of(key, response.text, gateway.records[-1].error)


# --- completions are checked as chunks are ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
@pytest.mark.parametrize("bad", [{"finish_reason": ["stop"]}, {"finish_reason": 7}, {"message": "text"}],
                         ids=["finish-list", "finish-number", "message-string"])
def test_a_completion_of_the_wrong_shape_is_one_502_and_one_record(start_gateway, hostile, path, bad):
    def respond_with(body: dict):
        async def respond(peer: Peer, request: ReceivedRequest) -> None:
            await peer.send(json_response(body))

        return respond

    body = completion("hello")
    body["choices"][0].update(bad)
    upstream = hostile(answer_each(respond_with(body)))
    gateway = start_gateway(OPENAI_BASE_URL=upstream.base_url, SWITCHBOARD_MAX_RETRIES="0")

    response = call(gateway, path)

    assert response.status_code == 502, response.text
    assert response.json()["error"]["type"] == "upstream_error"
    assert [(r.status, r.api) for r in gateway.records] == [(502, "responses" if path == "/responses" else "chat")]


# --- reserved task names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["unauthenticated", "*"])
def test_a_task_name_the_ledger_reserves_is_refused(gateway, sim_app, task):
    response = call(gateway, model="simulator/echo", headers={"x-inference-task-id": task})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "reserved_task_id" and error["param"] == "x-inference-task-id"
    assert not sim_app.requests, "a refused call must not reach the upstream"
    record = gateway.records[-1]
    assert record.status == 400 and record.task_id == "default" and record.key_name is not None


# --- an operator's key goes only to its provider's configured host ------------------------------------------------


def test_the_operators_key_is_not_sent_to_the_official_host_when_the_base_url_points_elsewhere(start_gateway,
                                                                                               hostile):
    """The operator pointed OPENAI_BASE_URL at their own proxy (127.0.0.1 here). A caller names OpenAI's own host
    (127.0.0.2 stands in for api.openai.com, with the same registry entry): the operator's key must not go there."""
    from switchboard.providers.registry import PROVIDERS
    from tests.conftest import OPENAI_KEY

    proxy = hostile(answer_each(lambda peer, request: peer.send(json_response(completion("via the proxy")))))
    official = HostileUpstream(answer_each(lambda peer, request: peer.send(json_response(completion("official")))))
    official.sock.close()
    official.sock = __import__("switchboard.http.serving", fromlist=["bind"]).bind("127.0.0.2")
    official.port = official.sock.getsockname()[1]
    official.start()
    try:
        spec = PROVIDERS["openai"]
        stand_in = type(spec)(spec.name, spec.adapter, f"http://127.0.0.2:{official.port}/v1", spec.needs_key)
        original = PROVIDERS["openai"]
        PROVIDERS["openai"] = stand_in
        try:
            gateway = start_gateway(OPENAI_BASE_URL=proxy.base_url,
                                    SWITCHBOARD_ALLOWED_PROVIDER_HOSTS=f"127.0.0.2:{official.port}")
        finally:
            PROVIDERS["openai"] = original
        named_official = call(gateway, model="gpt-x",
                              headers={"x-inference-provider-url": f"http://127.0.0.2:{official.port}"})
        named_proxy = call(gateway, model="gpt-x")
    finally:
        official.stop()

    assert named_official.status_code == 200 and named_proxy.status_code == 200
    assert official.requests[0].header("authorization") is None, "the operator's key went to the official host"
    assert proxy.requests[0].header("authorization") == f"Bearer {OPENAI_KEY}"
