"""Every sample Lambda event in `events/` through the Mangum entry, checked against `events/expect/`.

The events are the ones `sam local invoke` and the README use, so they must keep working: each is
handed to `lambda_handler.handler` as Lambda would hand it over (function URL and HTTP API payload 2.0,
REST API payload 1.0), against the simulator and the embedded DynamoDB table. A new event file is
picked up without a change here; it needs an `events/expect/<same name>.json` next to it.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.ledger.store import CallStore
from tests.conftest import EXTRA_SECRETS

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
EXPECT = EVENTS / "expect"
EVENT_FILES = sorted(EVENTS.glob("*.json"))

# The keys the events carry: obviously fake, and the only ones this gateway accepts or uses.
GATEWAY_KEY = "sb-example-gateway-key"
OPENAI_KEY = "sk-example-openai-key-fake"

CALL_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses"})
EXPECT_KEYS = frozenset({"status", "content_type", "body_contains", "body_json", "record"})


class FakeContext:
    """The parts of Lambda's context object that Mangum and Powertools may read."""

    function_name = "switchboard-GatewayFunction-EXAMPLE"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    memory_limit_in_mb = 1024
    log_group_name = f"/aws/lambda/{function_name}"
    log_stream_name = "2025/11/22/[$LATEST]0123456789abcdef0123456789abcdef"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def import_lambda_handler(mp: pytest.MonkeyPatch) -> ModuleType:
    """`handler/lambda_handler.py` is the function's entry, not part of the installed package."""
    try:
        return importlib.import_module("lambda_handler")
    except ModuleNotFoundError as exc:
        if exc.name != "lambda_handler":
            raise
    mp.syspath_prepend(str(REPO / "handler"))
    return importlib.import_module("lambda_handler")


@pytest.fixture(scope="module")
def lambda_env(simulator, local_aws):
    """The function's environment: gateway key, simulated OpenAI and Anthropic, the embedded table."""
    env = {
        "SWITCHBOARD_API_KEYS": GATEWAY_KEY,
        "OPENAI_BASE_URL": simulator.url + "/v1",
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_BASE_URL": simulator.url,
        **local_aws.env(),
    }
    EXTRA_SECRETS.extend(key for key in (GATEWAY_KEY, OPENAI_KEY) if key not in EXTRA_SECRETS)
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("SWITCHBOARD_")]:
            mp.delenv(name)  # an ambient setting (traces, body limit...) must not change the outcome
        for name, value in env.items():
            mp.setenv(name, value)
        yield env


@pytest.fixture(scope="module")
def lambda_handler(lambda_env):
    """The Mangum entry, its gateway rebuilt from `lambda_env` on the first event, as on a cold start.

    One event loop serves every event of the module, as one warm Lambda container would.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with pytest.MonkeyPatch.context() as mp:
        module = import_lambda_handler(mp)
        module.app.state.gateway = None
        try:
            yield module
        finally:
            gateway = module.app.state.gateway
            module.app.state.gateway = None
            if gateway is not None:
                loop.run_until_complete(gateway.aclose())
            asyncio.set_event_loop(None)
            loop.close()


@pytest.fixture(scope="module")
def call_store(lambda_env) -> CallStore:
    settings = Settings.from_env(lambda_env)
    return CallStore(aws.client("dynamodb", settings), settings.table_name)


@pytest.mark.parametrize("event_file", EVENT_FILES, ids=[path.stem for path in EVENT_FILES])
def test_event(event_file: Path, lambda_handler, call_store):
    expect = load_expectation(event_file)
    event = json.loads(event_file.read_text())

    response = lambda_handler.handler(event, FakeContext())

    headers = response_headers(response)
    body = response_body(response)
    where = f"{event_file.name}: {response['statusCode']} {headers.get('content-type')} {body[:300]!r}"
    assert response["statusCode"] == expect["status"], where
    if "content_type" in expect:
        assert headers.get("content-type", "").startswith(expect["content_type"]), where
    for text in expect.get("body_contains", ()):
        assert text in body, f"{text!r} not in the body of {where}"
    if "body_json" in expect:
        assert_subset(expect["body_json"], json.loads(body), "body")
    assert GATEWAY_KEY not in body and OPENAI_KEY not in body
    method, path = method_and_path(event)
    if headers.get("content-type", "").startswith("text/event-stream"):
        assert_responses_framing(body) if path.endswith("/responses") else assert_sse_framing(body)

    if method == "POST" and path in CALL_PATHS:
        # Every model call, refused or served, leaves one record, written before the response ended.
        request_id = headers.get("x-request-id")
        assert request_id, f"no x-request-id header in {where}"
        record = call_store.call(request_id)
        assert record is not None, f"no call record {request_id} in the table for {event_file.name}"
        assert record["status"] == response["statusCode"]
        assert GATEWAY_KEY not in repr(record) and OPENAI_KEY not in repr(record)
        assert_subset(expect.get("record", {}), record, "record")


def load_expectation(event_file: Path) -> dict:
    expect_file = EXPECT / event_file.name
    if not expect_file.exists():
        pytest.fail(f"events/{event_file.name} has no expected result: add events/expect/{event_file.name} "
                    '(at least {"status": <int>}).')
    expect = json.loads(expect_file.read_text())
    unknown = set(expect) - EXPECT_KEYS
    assert not unknown, f"events/expect/{event_file.name}: unknown keys {sorted(unknown)}"
    assert isinstance(expect.get("status"), int), f"events/expect/{event_file.name} needs an integer 'status'"
    return expect


def method_and_path(event: dict) -> tuple[str, str]:
    if "httpMethod" in event:  # payload format 1.0
        return event["httpMethod"], event["path"]
    http = event["requestContext"]["http"]
    return http["method"], http["path"]


def response_headers(response: dict) -> dict[str, str]:
    """Lower-cased response headers, from `headers` and (payload 1.0) `multiValueHeaders`."""
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), ", ".join(values))
    return headers


def response_body(response: dict) -> str:
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        return base64.b64decode(body).decode()
    return body


def assert_sse_framing(body: str) -> None:
    """Every event a single `data: {json}` line, the last one `data: [DONE]`."""
    assert body.endswith("\n\n"), f"the stream does not end with a blank line: {body[-80:]!r}"
    events = body[:-2].split("\n\n")
    assert events[-1] == "data: [DONE]", f"the last event is {events[-1][:200]!r}"
    for event in events[:-1]:
        assert event.startswith("data: ") and "\n" not in event, f"badly framed event {event[:200]!r}"
        assert isinstance(json.loads(event[len("data: "):]), dict), f"event is not a JSON object: {event[:200]!r}"


def assert_responses_framing(body: str) -> None:
    """Every event `event: <type>` then one `data: {json}` line of that type, numbered upwards, the last
    one response.completed."""
    assert body.endswith("\n\n"), f"the stream does not end with a blank line: {body[-80:]!r}"
    numbers = []
    for event in body[:-2].split("\n\n"):
        name_line, _, data_line = event.partition("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ") and "\n" not in data_line, \
            f"badly framed event {event[:200]!r}"
        data = json.loads(data_line[len("data: "):])
        assert data["type"] == name_line[len("event: "):], f"event name and type differ in {event[:200]!r}"
        numbers.append(data["sequence_number"])
    assert numbers == list(range(len(numbers))), f"sequence numbers {numbers}"
    assert data["type"] == "response.completed", f"the last event is {data['type']}"


def assert_subset(expected: object, actual: object, where: str) -> None:
    """Objects match on the keys `expected` names; arrays item by item; anything else exactly."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} is missing from {actual!r}"
            assert_subset(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(want, got, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
