"""Fuzz: generated chat requests, valid and not, never get a 5xx from the gateway.

Hypothesis builds request bodies around the OpenAI chat schema (right and wrong types, random roles,
content parts, tool calls, tools, stream flags, unknown fields) and x-inference-* header values. Every
answer must be a 4xx with an OpenAI error body, or a 200 that is well formed: a chat.completion object,
or an event stream that ends with `data: [DONE]` or an error event. The run is derandomized and bounded.
"""

from __future__ import annotations

import json
import socket
import string
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from switchboard.config.settings import Settings
from switchboard.core.egress import parse_provider_url
from switchboard.core.runtime import build_gateway
from switchboard.http.app import create_app
from switchboard.http.serving import BackgroundServer
from switchboard.providers.registry import OFFICIAL_HOSTS, PROVIDERS
from switchboard.simulator import Script, SimulatorApp
from switchboard.wire.errors import GatewayError
from tests.conftest import ALL_RECORDS, GATEWAY_KEY, CaptureResponses, gateway_env

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
HEADERS_FUZZ = settings(FUZZ, max_examples=150)
TASK = "security-fuzz"


def started(server: BackgroundServer) -> BackgroundServer:
    """Start with TCP_NODELAY: `serving.bind` makes its socket with protocol 0, so asyncio leaves Nagle on for
    accepted connections and every response written in two pieces waits ~40 ms for a delayed ACK."""
    server.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server.start()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """A simulator and a gateway for the module. Every provider's base URL is that simulator: nothing leaves
    loopback, and the session simulator's request log stays out of it."""
    upstream = started(BackgroundServer(SimulatorApp(Script())))
    base_urls = {f"{spec.env_prefix}_BASE_URL": upstream.url + ("" if spec.adapter == "anthropic" else "/v1")
                 for spec in PROVIDERS.values()}
    gateway_settings = Settings.from_env(gateway_env(upstream, **base_urls))
    app = create_app(gateway_settings, build_gateway(gateway_settings, observers=[ALL_RECORDS.append]))
    server = started(BackgroundServer(CaptureResponses(app)))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
    server.stop()
    upstream.stop()


# --- strategies ------------------------------------------------------------------------------------------------


def mostly(good: st.SearchStrategy, junk: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """Usually `good`, one time in six junk: enough requests pass validation to reach the providers' code."""
    junk = junk if junk is not None else JSON
    return st.integers(min_value=0, max_value=5).flatmap(lambda roll: junk if roll == 5 else good)


ODD_STRINGS = ["", " ", "\x00", "\r\n", "\ud800", "a\udfffb", "\u202etxt", "\U0001f99c" * 3, "null", "[DONE]",
               "x" * 5000]
TEXT = st.text(max_size=30) | st.sampled_from(ODD_STRINGS)
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)

MODELS = mostly(st.sampled_from(["simulator/echo", "simulator/tools", "openai/gpt-sim", "anthropic/claude-sim",
                                 "gpt-4.1-mini", "claude-sim", "o3", "SIMULATOR/echo", " simulator/echo "]),
                st.sampled_from(["groq/llama-sim", "nope/x", "openai/", "/", "simulator/"]) | TEXT | JSON)
ROLES = mostly(st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]),
               st.sampled_from(["wizard", "USER", ""]) | JSON)
IMAGE_URLS = mostly(st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "https://example.invalid/a.png"]),
                    st.sampled_from(["data:,x", "data:image/png,xx", "ftp://example.invalid/a.png", ""]) | TEXT)
PARTS = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["text", "image_url"]), st.sampled_from(["input_audio", "file"]) | TEXT)},
    optional={"text": mostly(TEXT), "image_url": mostly(st.fixed_dictionaries({"url": IMAGE_URLS}), IMAGE_URLS)})
CONTENT = mostly(TEXT | st.none() | st.lists(mostly(PARTS), max_size=3))
TOOL_CALLS = mostly(st.lists(mostly(st.fixed_dictionaries(
    {"id": TEXT, "type": st.just("function"),
     "function": st.fixed_dictionaries({"name": TEXT}, optional={"arguments": mostly(st.just('{"x": 1}') | TEXT)})
     })), max_size=2), st.sampled_from([5, 1.5, True, "call_1", {"id": "call_1"}]) | JSON)
MESSAGE = mostly(st.fixed_dictionaries({"role": ROLES}, optional={
    "content": CONTENT, "tool_calls": TOOL_CALLS, "tool_call_id": mostly(TEXT), "name": mostly(TEXT)}))
MESSAGES = mostly(st.lists(MESSAGE, min_size=1, max_size=5))
SCHEMA = st.just({"type": "object", "properties": {"reason": {"type": "string"}, "n": {"type": "integer"}}})
TOOL = mostly(st.fixed_dictionaries({"type": mostly(st.just("function"), TEXT), "function": st.fixed_dictionaries(
    {"name": mostly(st.sampled_from(["end_call", "transfer_to_number"]), TEXT)},
    optional={"description": mostly(TEXT), "parameters": mostly(SCHEMA)})}))
KNOWN = {"model", "messages", "stream", "stream_options", "tools", "tool_choice", "temperature", "max_tokens",
         "max_completion_tokens", "n", "stop", "user", "user_id", "elevenlabs_extra_body", "parallel_tool_calls",
         "top_p", "simulator"}  # "simulator" steers the test upstream (delays, failures): never generated
NUMBERS = st.integers(min_value=-5, max_value=5000) | st.floats(min_value=-1, max_value=3)
CHAT_BODY = st.fixed_dictionaries(
    {"model": MODELS, "messages": MESSAGES},
    optional={
        "stream": mostly(st.booleans(), st.none() | JSON),
        "stream_options": mostly(st.fixed_dictionaries({}, optional={"include_usage": mostly(st.booleans())})),
        "tools": mostly(st.lists(TOOL, max_size=3)),
        "tool_choice": mostly(st.sampled_from(["auto", "none", "required"]) | st.fixed_dictionaries(
            {"type": st.just("function"), "function": st.fixed_dictionaries({"name": TEXT})})),
        "parallel_tool_calls": mostly(st.booleans()),
        "temperature": mostly(NUMBERS), "top_p": mostly(NUMBERS), "max_tokens": mostly(NUMBERS),
        "max_completion_tokens": mostly(NUMBERS), "n": mostly(NUMBERS), "stop": mostly(TEXT | st.lists(TEXT)),
        "user": mostly(TEXT), "user_id": mostly(TEXT), "elevenlabs_extra_body": mostly(st.dictionaries(TEXT, JSON)),
    })
EXTRA_FIELDS = st.dictionaries(TEXT.filter(lambda name: name not in KNOWN), JSON, max_size=3)
BODIES = mostly(st.builds(lambda body, extra: {**extra, **body}, CHAT_BODY, EXTRA_FIELDS))

# The Responses API's body: input items, flat function tools, its own sampling and format fields.
RESPONSES_PART = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["input_text", "output_text", "input_image"]), TEXT)},
    optional={"text": mostly(TEXT), "image_url": IMAGE_URLS})
RESPONSES_ITEM = mostly(st.one_of(
    st.fixed_dictionaries({"role": mostly(st.sampled_from(["user", "assistant", "system", "developer"]), JSON)},
                          optional={"type": st.just("message"),
                                    "content": mostly(TEXT | st.lists(mostly(RESPONSES_PART), max_size=3))}),
    st.fixed_dictionaries({"type": st.just("function_call")},
                          optional={"call_id": mostly(TEXT), "name": mostly(TEXT),
                                    "arguments": mostly(st.just('{"reason": "x"}') | TEXT)}),
    st.fixed_dictionaries({"type": st.just("function_call_output")},
                          optional={"call_id": mostly(TEXT), "output": mostly(TEXT)}),
    st.fixed_dictionaries({"type": st.sampled_from(["reasoning", "web_search_call", "item_reference"])})))
RESPONSES_TOOL = mostly(st.fixed_dictionaries(
    {"type": mostly(st.just("function"), st.sampled_from(["web_search", "file_search", "mcp"]) | TEXT)},
    optional={"name": mostly(st.sampled_from(["end_call", "skip_turn"]), TEXT), "description": TEXT,
              "parameters": mostly(SCHEMA), "strict": mostly(st.booleans())}))
RESPONSES_BODY = st.fixed_dictionaries(
    {"model": MODELS, "input": mostly(TEXT | st.lists(RESPONSES_ITEM, min_size=1, max_size=4))},
    optional={"instructions": mostly(TEXT), "stream": mostly(st.booleans(), st.none() | JSON),
              "tools": mostly(st.lists(RESPONSES_TOOL, max_size=3)),
              "tool_choice": mostly(st.sampled_from(["auto", "none", "required"]) | st.fixed_dictionaries(
                  {"type": st.just("function"), "name": TEXT})),
              "parallel_tool_calls": mostly(st.booleans()), "temperature": mostly(NUMBERS),
              "top_p": mostly(NUMBERS), "max_output_tokens": mostly(NUMBERS), "user": mostly(TEXT),
              "metadata": mostly(st.dictionaries(TEXT, TEXT, max_size=3)), "store": mostly(st.booleans()),
              "previous_response_id": st.none() | TEXT,
              "text": mostly(st.fixed_dictionaries({"format": mostly(st.fixed_dictionaries(
                  {"type": st.sampled_from(["text", "json_object", "json_schema"])},
                  optional={"name": TEXT, "schema": SCHEMA}))})),
              "reasoning": mostly(st.fixed_dictionaries({"effort": mostly(st.sampled_from(["low", "high"]))})),
              "user_id": mostly(TEXT), "elevenlabs_extra_body": mostly(st.dictionaries(TEXT, JSON))})
RESPONSES_BODIES = mostly(st.builds(lambda body, extra: {**extra, **body}, RESPONSES_BODY, EXTRA_FIELDS))

PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(str.strip)
HEADER_SUFFIX = st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=30)
HOSTS = (st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(lambda a: f"[{a}]")
         | st.sampled_from(["localhost", "metadata.google.internal", "example.invalid", "0", "127.1", "0x7f000001"])
         | st.text(string.ascii_letters + string.digits + ".-", min_size=1, max_size=40))
URLS = st.builds(lambda scheme, host, port, path: scheme + host + port + path,
                 st.sampled_from(["", "http://", "https://", "file://", "gopher://", "ftp://", "HTTPS://"]), HOSTS,
                 st.sampled_from(["", ":443", ":0", ":65536", ":-1", ":x"]),
                 st.sampled_from(["", "/", "/v1", "/v1/chat/completions", "/../etc"]))


def outside_allowlist(url: str) -> bool:
    """An official provider host would send the request off this machine: the fuzz keeps to loopback."""
    try:
        _, host, _, _ = parse_provider_url(url)
    except GatewayError:
        return True
    return host not in OFFICIAL_HOSTS


# --- checks ----------------------------------------------------------------------------------------------------


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    content_type = response.headers.get("content-type", "")
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], error
        return
    assert response.status_code == 200, response.text[:500]
    responses_api = response.request.url.path.endswith("/responses")
    if content_type.startswith("text/event-stream"):
        events = [event for event in response.text.split("\n\n") if event.strip()]
        assert events, "an empty event stream"
        if responses_api:
            assert events[-1].startswith(("event: response.completed", "event: response.incomplete",
                                          "event: response.failed")), events[-1][:300]
        else:
            assert events[-1] == "data: [DONE]" or events[-1].startswith('data: {"error"'), events[-1][:300]
        assert response.text.endswith("\n\n"), "the stream ended mid-event"
    elif responses_api:
        answer = response.json()
        assert answer.get("object") == "response" and isinstance(answer.get("output"), list)
    else:
        completion = response.json()
        assert completion.get("object") == "chat.completion" and isinstance(completion.get("choices"), list)


def post(client: httpx.Client, body: object, headers: dict[str, str] | None = None,
         path: str = "/v1/chat/completions") -> httpx.Response:
    """One request on its own connection, so a connection the server drops is blamed on the request that did it."""
    content = json.dumps(body).encode()  # ASCII-escaped, so lone surrogates travel as \ud800 escapes
    try:
        response = client.post(path, content=content, headers={
            "authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json", "connection": "close",
            "x-inference-task-id": TASK, **(headers or {})})
    except httpx.TransportError as exc:
        settle(client)
        pytest.fail(f"the gateway dropped the connection without a complete answer: {exc!r}")
    if response.status_code >= 500:
        settle(client)
    return response


def settle(client: httpx.Client) -> None:
    """One more round trip, so the server's loop has finished logging a failure before hypothesis reports it.

    CPython 3.11 keeps the AST constructor's recursion counter per interpreter, not per thread
    (python/cpython#106905), and traceback formatting (server thread) and pytest's report (this thread) both
    parse source with `ast`: overlapping, they end the session with "AST constructor recursion depth mismatch".
    """
    client.get("/health", headers={"connection": "close"})


# --- the fuzz --------------------------------------------------------------------------------------------------


@FUZZ
@given(body=BODIES)
def test_generated_bodies_never_get_a_5xx(client, body):
    check_answer(post(client, body))


@FUZZ
@given(body=RESPONSES_BODIES)
def test_generated_responses_bodies_never_get_a_5xx(client, body):
    check_answer(post(client, body, path="/v1/responses"))


@HEADERS_FUZZ
@given(task_id=st.none() | PRINTABLE, environment=st.none() | PRINTABLE,
       metadata=st.dictionaries(HEADER_SUFFIX, PRINTABLE, max_size=40),
       provider_url=st.none() | URLS | PRINTABLE, provider_key=st.none() | PRINTABLE,
       model=st.sampled_from(["simulator/echo", "openai/gpt-sim", "anthropic/claude-sim", "groq/llama-sim"]),
       stream=st.booleans())
def test_generated_header_values_never_get_a_5xx(client, task_id, environment, metadata, provider_url,
                                                 provider_key, model, stream):
    headers = {f"x-inference-metadata-{name}": value for name, value in metadata.items()}
    for name, value in (("x-inference-task-id", task_id), ("x-inference-environment", environment),
                        ("x-inference-provider-url", provider_url), ("x-inference-provider-api-key", provider_key)):
        if value is not None:
            headers[name] = value
    assume(provider_url is None or outside_allowlist(provider_url))
    check_answer(post(client, {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
                      headers))
