"""Bedrock's error paths never leak the gateway's AWS keys, not even in part, over real sockets.

A hostile upstream stands in for Bedrock (AWS_ENDPOINT_URL_BEDROCK_RUNTIME) and echoes the secret access key
or the session token the gateway signed with, placed to straddle each cut the adapter makes: the error
type at 100 characters, a plain-text body at 300, a JSON message at 1000 (also with the key hidden behind
JSON escapes), an in-stream exception at 1200, and the 64 KiB read cap. No 8-character piece of the key
(base.MIN_FRAGMENT) may reach the client's body or the call record's error."""

from __future__ import annotations

import json

import httpx
import pytest

from switchboard.providers import bedrock
from switchboard.providers.errors import MIN_FRAGMENT
from switchboard.providers.transport.response import MAX_ERROR_BODY
from switchboard.simulator.bedrock_api import encode_message, event_message, exception_message
from tests.conftest import EXTRA_SECRETS, GATEWAY_KEY
from tests.hostile_upstream import HostileUpstream, answer_each, http_response, send

ACCESS_KEY = "AKIDTESTFAKEFRAGMENT"
SECRET_KEY = "Zq7Xw9Kp2Lm4Nv6Bt8Rc0Yd3Hf5Gj1SaQe/W+uTz"  # 40 characters, as AWS's are
SESSION_TOKEN = "FwoGZXIvYXdzEFAKEsessionTOKENq1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3"
MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
LEFT = 12  # how much of the key an unscrubbed cut would leave: more than MIN_FRAGMENT
STREAM_PREFIX = "Upstream provider 'bedrock' failed mid-stream: "


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    EXTRA_SECRETS.extend([SECRET_KEY, SESSION_TOKEN])
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CREDENTIAL_EXPIRATION", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials())


@pytest.fixture
def bedrock_before(start_gateway):
    """Factory: a gateway whose Bedrock endpoint is a hostile upstream answering every request with `answer`."""
    started: list[HostileUpstream] = []

    def start(answer: bytes):
        upstream = HostileUpstream(answer_each(send(answer))).start()
        started.append(upstream)
        return start_gateway(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=upstream.url, AWS_REGION="us-east-1"), upstream

    yield start
    for upstream in started:
        upstream.stop()


def call(gateway, stream: bool) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", timeout=20,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}"},
                      json={"model": f"bedrock/{MODEL}", "stream": stream,
                            "messages": [{"role": "user", "content": "hi"}]})


def pieces_of(key: str, texts: list[str]) -> list[str]:
    """Every MIN_FRAGMENT-character piece of `key` found in any of `texts`."""
    pieces = {key[i:i + MIN_FRAGMENT] for i in range(len(key) - MIN_FRAGMENT + 1)}
    return sorted(piece for piece in pieces for text in texts if piece in text)


def assert_no_piece(key: str, response: httpx.Response, gateway) -> None:
    record = gateway.records[-1]
    assert record.error, "the call should have failed"
    assert pieces_of(key, [response.text, record.error]) == [], (response.text[:1500], record.error)


def escaped(text: str) -> str:
    """`text` as a JSON string body would carry it with every character escaped: no byte scan can see it."""
    return "".join(f"\\u{ord(character):04x}" for character in text)


def aws_error(body: bytes, error_type: str = "ValidationException", status: int = 400) -> bytes:
    return http_response(status, body, [("content-type", "application/json"), ("x-amzn-errortype", error_type)])


def event_stream(*messages: bytes) -> bytes:
    return http_response(200, b"".join(messages), [("content-type", "application/vnd.amazon.eventstream")])


KEYS = pytest.mark.parametrize("key", [SECRET_KEY, SESSION_TOKEN], ids=["secret_key", "session_token"])
STREAMED = pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not_streamed"])


@KEYS
@STREAMED
def test_a_json_message_cut_at_1000_characters(bedrock_before, key, stream):
    message = "m" * (1000 - LEFT) + key + " and more"
    gateway, _ = bedrock_before(aws_error(json.dumps({"message": message}).encode()))
    response = call(gateway, stream)
    assert response.status_code == 400 and "ValidationException" in response.text
    assert_no_piece(key, response, gateway)


@KEYS
@STREAMED
def test_a_json_message_whose_key_hides_behind_escapes(bedrock_before, key, stream):
    body = '{"message": "' + "m" * (1000 - LEFT) + escaped(key) + ' and more"}'
    gateway, _ = bedrock_before(aws_error(body.encode()))
    response = call(gateway, stream)
    assert response.status_code == 400
    assert_no_piece(key, response, gateway)


@KEYS
@STREAMED
def test_a_plain_text_body_cut_at_300_characters(bedrock_before, key, stream):
    gateway, _ = bedrock_before(aws_error(b"E" * (300 - LEFT) + key.encode() + b" and more"))
    response = call(gateway, stream)
    assert response.status_code == 400 and "EEEE" in response.text  # the body's start did reach the caller
    assert_no_piece(key, response, gateway)


@KEYS
@STREAMED
def test_an_error_type_cut_at_100_characters(bedrock_before, key, stream):
    gateway, _ = bedrock_before(aws_error(b'{"message": "refused"}', error_type="T" * (100 - LEFT) + key))
    response = call(gateway, stream)
    assert response.status_code == 400 and "refused" in response.text
    assert_no_piece(key, response, gateway)


@KEYS
def test_a_body_cut_by_the_64_kib_read_cap(bedrock_before, key):
    """The read stops at MAX_ERROR_BODY with the key's first characters last: they are scrubbed as read."""
    body = b"E" * (MAX_ERROR_BODY - LEFT) + key.encode() + b"E" * 1000
    gateway, upstream = bedrock_before(aws_error(body))
    response = call(gateway, True)
    assert response.status_code == 400
    assert_no_piece(key, response, gateway)


@KEYS
def test_an_exception_before_the_first_token_cut_at_1200_characters(bedrock_before, key):
    padding = "m" * (1200 - len(STREAM_PREFIX + "validationException: ") - LEFT)
    gateway, _ = bedrock_before(event_stream(event_message("messageStart", {"role": "assistant"}),
                                             exception_message("validationException", padding + key + " more")))
    response = call(gateway, True)
    assert response.status_code == 400 and "validationException" in response.text
    assert_no_piece(key, response, gateway)


@KEYS
def test_an_exception_after_the_first_token_cut_at_1200_characters(bedrock_before, key):
    padding = "m" * (1200 - len(STREAM_PREFIX + "modelStreamErrorException: ") - LEFT)
    word = event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}})
    gateway, _ = bedrock_before(event_stream(event_message("messageStart", {"role": "assistant"}), word,
                                             exception_message("modelStreamErrorException", padding + key)))
    response = call(gateway, True)
    assert response.status_code == 200 and '"content":"Hello"' in response.text
    *_, last, end = response.text.rstrip().split("\n\n")
    assert last.startswith('data: {"error"') and end == "data: [DONE]"  # ended by an error event, then the end
    assert_no_piece(key, response, gateway)


@KEYS
def test_an_error_message_in_its_headers_cut_at_1200_characters(bedrock_before, key):
    padding = "m" * (1200 - len(STREAM_PREFIX + "validationException: ") - LEFT)
    error = encode_message({":message-type": "error", ":error-code": "validationException",
                            ":error-message": padding + key}, b"")
    gateway, _ = bedrock_before(event_stream(event_message("messageStart", {"role": "assistant"}), error))
    response = call(gateway, True)
    assert response.status_code == 400
    assert_no_piece(key, response, gateway)
