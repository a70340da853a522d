"""The simulator's Amazon Bedrock: Converse and ConverseStream, behind a SigV4 check done as AWS does it.

The signature is verified from AWS's Signature Version 4 specification, written out here rather than
borrowed from botocore's signer, so a request the gateway signs wrongly (the path encoded differently
from what was signed, a header changed after signing, a stale date, the wrong secret) gets the 403
AWS gives. Bodies are checked against botocore's service model (the shapes AWS accepts) plus the
rules Bedrock adds (a user turn first, alternating roles, no blank text). Streams are AWS's binary
event stream, written by the encoder below, paced and faulted by the same Script as the other APIs.

`additionalModelRequestFields` is checked per model family, as the model's native API would check it:
Claude's `thinking` (and `output_config`) by the Anthropic simulator's rules, with maxTokens for
max_tokens (4096 when absent: an assumption, AWS does not document Claude's default on Converse);
gpt-oss's `reasoning_effort` and Nova 2's `reasoningConfig` by their documented values; any other model
refuses reasoning fields as extraneous keys. A request that reasons gets reasoningContent first.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import json
import os
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from switchboard.simulator import anthropic_api
from switchboard.simulator.app import ConnectionCut, Send, json_response
from switchboard.simulator.script import Script, estimate_prompt_tokens, pick_tool, tool_arguments

SERVICE = "bedrock"
MAX_CLOCK_SKEW_S = 300
TOOL_OUTPUT_TOKENS = 8
SIMULATED_ROLE = "arn:aws:sts::123456789012:assumed-role/switchboard-simulated-role/switchboard"
_ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.coral.service/"
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your "
                       "AWS Secret Access Key and signing method. Consult the service documentation for details.")
_INVALID_TOKEN = "The security token included in the request is invalid."

Refusal = tuple[int, str, str]  # (HTTP status, AWS error type, message)


@dataclass(frozen=True)
class AwsKey:
    """What the simulated account knows about one access key id."""

    secret_key: str
    session_token: str | None = None
    expires_at: float | None = None  # epoch seconds: after it, ExpiredTokenException


KeyLookup = Callable[[str], "AwsKey | None"]


def environment_keys(access_key: str) -> AwsKey | None:
    """The credentials in this process's environment: what `switchboard simulator` accepts by default."""
    if not access_key or access_key != os.environ.get("AWS_ACCESS_KEY_ID"):
        return None
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    return AwsKey(secret, os.environ.get("AWS_SESSION_TOKEN") or None) if secret else None


# --- SigV4, as the service checks it ------------------------------------------------------------------


def check_signature(scope: dict, body: bytes, keys: KeyLookup, now: float | None = None) -> Refusal | None:
    """None when the request is signed by a known, current key; else the refusal AWS would answer."""
    headers = _headers(scope)
    authorization = headers.get("authorization")
    if not authorization:
        return 403, "MissingAuthenticationTokenException", "Missing Authentication Token"
    parsed = _parse_authorization(authorization)
    if parsed is None:
        return 400, "IncompleteSignatureException", f"Authorization header is malformed: '{authorization[:40]}...'"
    access_key, scope_date, region, service, signed_headers, signature = parsed
    key = keys(access_key)
    if key is None or key.session_token != headers.get("x-amz-security-token"):
        return 403, "UnrecognizedClientException", _INVALID_TOKEN
    now = time.time() if now is None else now
    if key.expires_at is not None and now >= key.expires_at:
        return 403, "ExpiredTokenException", "The security token included in the request is expired"
    problem = _scope_problem(headers, scope_date, service, signed_headers, now)
    if problem:
        return 403, "InvalidSignatureException", problem
    payload_hash = hashlib.sha256(body).hexdigest()
    if headers.get("x-amz-content-sha256", payload_hash) != payload_hash:
        return 400, "InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match."
    canonical = canonical_request(scope, headers, signed_headers, payload_hash)
    expected = _signature(key.secret_key, headers["x-amz-date"], f"{scope_date}/{region}/{service}/aws4_request",
                          canonical)
    if not hmac.compare_digest(expected, signature):
        return 403, "InvalidSignatureException", _SIGNATURE_MISMATCH
    return None


def _headers(scope: dict) -> dict[str, str]:
    """Lower-case names; a repeated header's values joined by commas, as SigV4 canonicalises them."""
    joined: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        joined.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return {name: ",".join(values) for name, values in joined.items()}


def _parse_authorization(value: str) -> tuple[str, str, str, str, list[str], str] | None:
    algorithm, _, rest = value.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return None
    pairs = [part.strip().partition("=")[::2] for part in rest.split(",")]
    fields = dict(pairs)
    if len(pairs) != 3 or set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        return None  # each exactly once: a second Authorization header joined on is refused, not half-read
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or credential[4] != "aws4_request" or not fields.get("SignedHeaders"):
        return None
    signed = fields["SignedHeaders"].split(";")
    return credential[0], credential[1], credential[2], credential[3], signed, fields.get("Signature", "")


def _scope_problem(headers: dict[str, str], scope_date: str, service: str, signed: list[str],
                   now: float) -> str | None:
    if service != SERVICE:
        return f"Credential should be scoped to correct service: '{SERVICE}'."
    if "host" not in signed or "x-amz-date" not in signed or any(name not in headers for name in signed):
        return "'Host' and 'X-Amz-Date' must be signed, and every signed header must be sent."
    try:
        signed_at = datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "X-Amz-Date must be an ISO 8601 basic timestamp (20250101T000000Z)."
    if abs(now - signed_at) > MAX_CLOCK_SKEW_S:
        return f"Signature expired: {headers['x-amz-date']} is more than 5 minutes away from the server's time."
    if headers["x-amz-date"][:8] != scope_date:
        return "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP."
    return None


def canonical_request(scope: dict, headers: dict[str, str], signed: list[str], payload_hash: str) -> str:
    """AWS's canonical request. The path is the raw one received, encoded once more (every service but S3)."""
    raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in sorted(signed))
    return "\n".join([scope["method"], quote(raw_path, safe="/~"), _canonical_query(scope.get("query_string", b"")),
                      canonical_headers, ";".join(sorted(signed)), payload_hash])


def _canonical_query(raw: bytes) -> str:
    pairs = []
    for part in raw.decode("latin-1").split("&") if raw else []:
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _signature(secret_key: str, amz_date: str, credential_scope: str, canonical: str) -> str:
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, credential_scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in credential_scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


# --- the binary event stream (application/vnd.amazon.eventstream) ---------------------------------------


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and header lengths, CRC), string headers, payload, CRC."""
    header_bytes = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 16 + len(header_bytes) + len(payload), len(header_bytes))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + header_bytes + payload
    return message + struct.pack(">I", binascii.crc32(message))


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return struct.pack(">B", len(name_bytes)) + name_bytes + b"\x07" + struct.pack(">H", len(value_bytes)) + value_bytes


def event_message(event_type: str, payload: dict) -> bytes:
    """An event, padded with a `p` field as Bedrock pads its events (clients must ignore it)."""
    padded = {**payload, "p": _PADDING[: 1 + len(event_type) % len(_PADDING)]}
    return encode_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                          json.dumps(padded, separators=(",", ":")).encode())


def exception_message(exception_type: str, message: str) -> bytes:
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())


# --- requests: what Bedrock accepts ----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _input_shapes() -> dict[bool, object]:
    from botocore.session import Session

    model = Session().get_service_model("bedrock-runtime")
    return {True: model.operation_model("ConverseStream").input_shape,
            False: model.operation_model("Converse").input_shape}


def request_problem(body: dict, model: str, streaming: bool) -> str | None:
    """What AWS would refuse in this body (botocore's service model, then Bedrock's own rules), or None."""
    from botocore.validate import ParamValidator

    params = {name: value for name, value in body.items() if name != "simulator"}
    report = ParamValidator().validate({**params, "modelId": model}, _input_shapes()[streaming])
    if report.has_errors():
        return report.generate_report()
    return _conversation_problem(body) or reasoning_problem(body, model)


_MUST_START_WITH_USER = ("A conversation must start with a user message. Try again with a conversation that starts "
                         "with a user message.")
_MUST_ALTERNATE = ("A conversation must alternate between user and assistant roles. Make sure the conversation "
                   "alternates between user and assistant roles and try again.")
_TOOL_CONFIG_NEEDED = "The toolConfig field must be defined when using toolUse and toolResult content blocks."


def _conversation_problem(body: dict) -> str | None:
    """Bedrock's rules beyond the shapes: a user turn first, alternating roles, no empty or blank content."""
    messages = body.get("messages") or []
    if not messages or messages[0]["role"] != "user":
        return _MUST_START_WITH_USER
    for index, message in enumerate(messages):
        if index and message["role"] == messages[index - 1]["role"]:
            return _MUST_ALTERNATE
        if not message["content"]:
            return f"The content field in the Message object at messages.{index} is empty."
        for position, block in enumerate(message["content"]):
            if "text" in block and not block["text"].strip():
                return f"The text field in the ContentBlock object at messages.{index}.content.{position} is blank."
            if ("toolUse" in block or "toolResult" in block) and "toolConfig" not in body:
                return _TOOL_CONFIG_NEEDED
    return None


_PROFILE_PREFIX = ("us.", "eu.", "apac.", "global.", "au.", "jp.", "ca.", "us-gov.")
_REASONING_FIELDS = ("thinking", "output_config", "reasoning_effort", "reasoningConfig")
_EFFORTS = ("low", "medium", "high")
CLAUDE_DEFAULT_MAX_TOKENS = 4096  # what the simulator assumes Claude gets when maxTokens is absent


def model_family(model: str) -> str:
    """'claude', 'gpt-oss', 'nova-2' or '' for a model id, inference profile or ARN."""
    base = model.rsplit("/", 1)[-1] if model.startswith("arn:") else model
    for prefix in _PROFILE_PREFIX:
        base = base.removeprefix(prefix)
    for start, family in (("anthropic.claude", "claude"), ("openai.gpt-oss", "gpt-oss"), ("amazon.nova-2", "nova-2")):
        if base.startswith(start):
            return family
    return ""


def reasoning_problem(body: dict, model: str) -> str | None:
    """What the model's native API refuses in `additionalModelRequestFields`, or None."""
    extra = body.get("additionalModelRequestFields") or {}
    if not isinstance(extra, dict):
        return "additionalModelRequestFields must be a JSON object."
    family = model_family(model)
    allowed = {"claude": ("thinking", "output_config"), "gpt-oss": ("reasoning_effort",),
               "nova-2": ("reasoningConfig",)}.get(family, ())
    for name in _REASONING_FIELDS:
        if name in extra and name not in allowed:
            return f"The model returned the following errors: extraneous key [{name}] is not permitted"
    if family == "gpt-oss" and "reasoning_effort" in extra and extra["reasoning_effort"] not in _EFFORTS:
        return "The model returned the following errors: reasoning_effort must be one of low, medium, high"
    if family == "nova-2" and "reasoningConfig" in extra:
        config = extra["reasoningConfig"]
        if not isinstance(config, dict) or config.get("type") not in ("enabled", "disabled") or (
                config.get("type") == "enabled" and config.get("maxReasoningEffort") not in _EFFORTS):
            return "reasoningConfig must be {type: enabled, maxReasoningEffort: low|medium|high} or {type: disabled}"
    if family == "claude" and "thinking" in extra:
        return anthropic_api.thinking_problem(_as_anthropic(body, model, extra))
    return None


def _as_anthropic(body: dict, model: str, extra: dict) -> dict:
    """The Converse request as the Messages request Bedrock hands Claude, as far as thinking's rules look."""
    inference = body.get("inferenceConfig") or {}
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    messages = [{"role": m["role"], "content": [_anthropic_block(b) for b in m["content"]]}
                for m in body.get("messages") or []]
    request = {"model": model.rsplit("/", 1)[-1].replace("anthropic.", "", 1), "messages": messages,
               "max_tokens": inference.get("maxTokens", CLAUDE_DEFAULT_MAX_TOKENS), **extra}
    if "temperature" in inference:
        request["temperature"] = inference["temperature"]
    if "topP" in inference:
        request["top_p"] = inference["topP"]
    if "any" in choice or "tool" in choice:
        request["tool_choice"] = {"type": "any" if "any" in choice else "tool"}
    return request


def _anthropic_block(block: dict) -> dict:
    for key, kind in (("toolUse", "tool_use"), ("toolResult", "tool_result"), ("reasoningContent", "thinking")):
        if key in block:
            return {"type": kind}
    return {"type": "text"}


def reasoning_on(body: dict, model: str) -> bool:
    """Whether the request asks this model to reason (and so gets reasoningContent first)."""
    extra = body.get("additionalModelRequestFields") or {}
    family = model_family(model)
    if family == "claude":
        return (extra.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    if family == "gpt-oss":
        return extra.get("reasoning_effort") in _EFFORTS
    if family == "nova-2":
        return (extra.get("reasoningConfig") or {}).get("type") == "enabled"
    return False


# --- answers ------------------------------------------------------------------------------------------


_ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
                500: "InternalServerException", 503: "ServiceUnavailableException"}


async def error_response(send: Send, status: int, error_type: str, message: str) -> None:
    """An AWS JSON error: the type in x-amzn-errortype (with its namespace, as AWS sends it), the message in
    the body."""
    await json_response(send, status, {"message": message}, {"x-amzn-errortype": error_type + _ERROR_NAMESPACE,
                                                             "x-amzn-requestid": str(uuid.uuid4())})


def _failure(script: Script, model: str, streaming: bool) -> Refusal:
    status = int(script.fail_status or 500)
    error_type = script.error_type or _ERROR_TYPES.get(status) or (
        "ValidationException" if status < 500 else "InternalServerException")
    if error_type == "AccessDeniedException":
        action = "bedrock:InvokeModelWithResponseStream" if streaming else "bedrock:InvokeModel"
        message = (f"User: {SIMULATED_ROLE} is not authorized to perform: {action} on resource: "
                   f"arn:aws:bedrock:us-east-1::foundation-model/{model} because no identity-based policy allows "
                   f"the {action} action")
    else:
        message = f"simulated {error_type} ({status})"
    return status, error_type, message


async def respond(body: dict, model: str, streaming: bool, script: Script, send: Send) -> None:
    started = time.perf_counter()
    problem = request_problem(body, model, streaming)
    if problem:
        await error_response(send, 400, "ValidationException", problem)
        return
    if script.fail_status:
        await error_response(send, *_failure(script, model, streaming))
        return
    if reasoning_on(body, model) and not script.reasoning_tokens:
        script = script.with_overrides({"reasoning_tokens": anthropic_api.DEFAULT_THINKING_WORDS})
    tool = pick_tool(script, _offered_tools(body))
    words = script.words()
    stop_reason = "tool_use" if tool is not None else "end_turn"
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    if tool is None and isinstance(max_tokens, int) and len(words) > max_tokens:
        words, stop_reason = words[:max_tokens], "max_tokens"
    stop_reason = script.stop_reason or stop_reason
    output_tokens = (TOOL_OUTPUT_TOKENS if tool is not None else len(words)) + script.reasoning_tokens
    usage = _usage(body, script, output_tokens)
    if not streaming:
        await asyncio.sleep((script.first_token_ms + script.gap_ms * max(len(words) - 1, 0)) / 1000)
        await _converse_answer(send, script, tool, words, stop_reason, usage, started)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/vnd.amazon.eventstream"), (b"x-amzn-requestid", str(uuid.uuid4()).encode())]})
    await _emit(send, event_message("messageStart", {"role": "assistant"}))
    block = await _stream_reasoning(send, script)
    if tool is not None:
        await _stream_tool(send, script, tool, block)
    elif not await _stream_text(send, script, words, block):
        return
    await _emit(send, event_message("messageStop", {"stopReason": stop_reason}))
    metrics = {"latencyMs": round((time.perf_counter() - started) * 1000)}
    await _emit(send, event_message("metadata", {"usage": usage, "metrics": metrics}), more_body=False)


def _offered_tools(body: dict) -> list[dict]:
    """Converse tool specs in the shape `pick_tool` and `tool_arguments` read (name, parameters)."""
    specs = [tool.get("toolSpec") for tool in (body.get("toolConfig") or {}).get("tools") or []]
    return [{"name": spec["name"], "parameters": (spec.get("inputSchema") or {}).get("json") or {}}
            for spec in specs if isinstance(spec, dict)]


async def _stream_reasoning(send: Send, script: Script) -> int:
    """Reasoning first, when asked for, as block 0 (with its signature); the index of the next block."""
    words = script.reasoning_words()
    if not words:
        return 0
    for word in words:
        await _emit(send, event_message("contentBlockDelta", {"contentBlockIndex": 0,
                                                              "delta": {"reasoningContent": {"text": word}}}))
    await _emit(send, event_message("contentBlockDelta", {"contentBlockIndex": 0,
                                                          "delta": {"reasoningContent": {"signature": "sim-sig"}}}))
    await _emit(send, event_message("contentBlockStop", {"contentBlockIndex": 0}))
    return 1


async def _stream_text(send: Send, script: Script, words: list[str], block: int) -> bool:
    """The text block; False when the script ended the stream early with an exception."""
    if script.first_token_ms:
        await asyncio.sleep(script.first_token_ms / 1000)
    for sent, word in enumerate(words):
        if script.cut_after is not None and sent >= script.cut_after:
            raise ConnectionCut("simulated connection cut")
        if script.error_after is not None and sent >= script.error_after:
            exception = script.error_type or "modelStreamErrorException"
            await _emit(send, exception_message(exception, f"simulated {exception} mid-stream"), more_body=False)
            return False
        if sent and script.gap_ms:
            await asyncio.sleep(script.gap_ms / 1000)
        await _emit(send, event_message("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": word}}))
    await _emit(send, event_message("contentBlockStop", {"contentBlockIndex": block}))
    return True


async def _stream_tool(send: Send, script: Script, tool: dict, block: int) -> None:
    """toolUse start, then the input in fragments; a tool without input gets no fragment at all, as on Bedrock."""
    arguments = tool_arguments(tool)
    start = {"toolUse": {"toolUseId": "tooluse_sim_" + uuid.uuid4().hex[:22], "name": tool["name"]}}
    await _emit(send, event_message("contentBlockStart", {"contentBlockIndex": block, "start": start}))
    if script.first_token_ms:
        await asyncio.sleep(script.first_token_ms / 1000)
    encoded = json.dumps(arguments) if arguments else ""
    for offset in range(0, len(encoded), 8):
        delta = {"toolUse": {"input": encoded[offset:offset + 8]}}
        await _emit(send, event_message("contentBlockDelta", {"contentBlockIndex": block, "delta": delta}))
    await _emit(send, event_message("contentBlockStop", {"contentBlockIndex": block}))


async def _converse_answer(send: Send, script: Script, tool: dict | None, words: list[str], stop_reason: str,
                           usage: dict, started: float) -> None:
    content: list[dict] = []
    if script.reasoning_tokens:
        content.append({"reasoningContent": {"reasoningText": {"text": "".join(script.reasoning_words()),
                                                               "signature": "sim-sig"}}})
    if tool is not None:
        content.append({"toolUse": {"toolUseId": "tooluse_sim_" + uuid.uuid4().hex[:22], "name": tool["name"],
                                    "input": tool_arguments(tool)}})
    else:
        content.append({"text": "".join(words)})
    answer = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason,
              "usage": usage, "metrics": {"latencyMs": round((time.perf_counter() - started) * 1000)}}
    await json_response(send, 200, answer, {"x-amzn-requestid": str(uuid.uuid4())})


def _usage(body: dict, script: Script, output_tokens: int) -> dict:
    """Bedrock's accounting: cache reads and writes are counted apart from inputTokens, and only when present."""
    prompt = script.prompt_tokens or estimate_prompt_tokens(body)
    cached = min(max(int(script.cached_tokens), 0), prompt)
    written = min(max(int(script.cache_write_tokens), 0), prompt - cached)
    usage = {"inputTokens": prompt - cached - written, "outputTokens": output_tokens,
             "totalTokens": prompt + output_tokens}
    if cached:
        usage["cacheReadInputTokens"] = cached
    if written:
        usage["cacheWriteInputTokens"] = written
    return usage


async def _emit(send: Send, message: bytes, *, more_body: bool = True) -> None:
    await send({"type": "http.response.body", "body": message, "more_body": more_body})
