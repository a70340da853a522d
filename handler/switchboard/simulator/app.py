"""The simulator's ASGI app: plain ASGI, so its own overhead stays out of the gateway's numbers."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

from switchboard.providers.registry import PROVIDERS
from switchboard.simulator.script import Script

if TYPE_CHECKING:
    from switchboard.simulator.bedrock_api import AwsKey, KeyLookup

Send = Callable[[dict], Awaitable[None]]
MODELS = PROVIDERS["simulator"].listed_models
# Bedrock's Converse paths, matched on the raw path: the model id is URL-encoded and may hold "%2F".
BEDROCK_PATH = re.compile(rb"/model/([^/]+)/(converse|converse-stream)")


class ConnectionCut(Exception):
    """Raised after a response started: the server then drops the connection mid-stream."""


class SimulatorApp:
    """`aws_keys` are the AWS credentials Bedrock requests must be signed with: a map or a lookup from
    access key id to `AwsKey`; by default the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment."""

    def __init__(self, defaults: Script | None = None, *,
                 aws_keys: Mapping[str, AwsKey] | KeyLookup | None = None) -> None:
        self.defaults = defaults or Script()
        self.aws_keys = aws_keys.get if isinstance(aws_keys, Mapping) else aws_keys
        self.seen: dict[str, int] = {}  # requests per model name, for the flaky-* models
        self.requests: list[dict] = []  # every request body received, newest last (tests read it)
        self.request_headers: list[dict[str, str]] = []
        self.request_paths: list[str] = []  # the raw (still URL-encoded) path of each request
        self.client_ports: list[int] = []  # the caller's port per request: repeats when connections are reused

    async def __call__(self, scope: dict, receive: Callable, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path in {"/health", "/"}:
            await json_response(send, 200, {"status": "ok", "simulated": True})
            return
        if method == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "switchboard-simulator"} for m in MODELS]
            await json_response(send, 200, {"object": "list", "data": data})
            return
        bedrock = BEDROCK_PATH.fullmatch(scope.get("raw_path") or path.encode()) if method == "POST" else None
        if bedrock is not None:
            model = unquote(bedrock.group(1).decode("latin-1"))
            await self._bedrock(scope, receive, send, model, streaming=bedrock.group(2) == b"converse-stream")
            return
        if method != "POST" or not (path.endswith("/chat/completions") or path.endswith("/messages")):
            await json_response(send, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})
            return
        raw = await _read_body(receive)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await json_response(send, 400, {"error": {"message": "body is not a JSON object",
                                                      "type": "invalid_request_error"}})
            return
        self._note(scope, body)
        script = self._script(body)
        if script.fail_status:
            error = {"message": f"simulated failure {script.fail_status}", "type": "simulated_error"}
            payload = {"type": "error", "error": error} if path.endswith("/messages") else {"error": error}
            headers = {"retry-after": str(script.retry_after)} if script.retry_after is not None else {}
            if 300 <= int(script.fail_status) < 400:  # a redirect somewhere else: gateways must not follow it
                headers["location"] = "http://169.254.169.254/latest/meta-data/"
            await json_response(send, int(script.fail_status), payload, headers)
            return
        from switchboard.simulator import anthropic_api, openai_api

        api = anthropic_api if path.endswith("/messages") else openai_api
        await api.respond(body, script, send)

    def _note(self, scope: dict, body: dict) -> None:
        self.requests.append(body)
        self.client_ports.append((scope.get("client") or ("", 0))[1])
        self.request_headers.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        self.request_paths.append((scope.get("raw_path") or scope["path"].encode()).decode("latin-1"))

    async def _bedrock(self, scope: dict, receive: Callable, send: Send, model: str, *, streaming: bool) -> None:
        """Converse / ConverseStream: the signature first, as AWS checks it before anything else."""
        from switchboard.simulator import bedrock_api

        raw = await _read_body(receive)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._note(scope, body if isinstance(body, dict) else {})
        refusal = bedrock_api.check_signature(scope, raw, self.aws_keys or bedrock_api.environment_keys)
        if refusal is not None:
            await bedrock_api.error_response(send, *refusal)
        elif not isinstance(body, dict):
            await bedrock_api.error_response(send, 400, "SerializationException", "The body is not a JSON object.")
        else:
            await bedrock_api.respond(body, model, streaming, self._script({**body, "model": model}), send)

    def _script(self, body: dict) -> Script:
        """Defaults, then what the model name asks for, then the request's `simulator` object.

        Model names that misbehave on purpose (fallback tests and demos): `fail-<status>` always answers
        that status; `flaky-<status>-<n>` answers it to the first n requests for that exact name, then
        works; `slow-<ms>` waits that long before its first token; `throws-<exceptionType>` (Bedrock)
        answers 200 and raises that exception in the stream before the first token, and
        `throws-<exceptionType>-<n>` does so to the first n requests only.
        """
        script = self.defaults
        model = str(body.get("model", ""))
        self.seen[model] = count = self.seen.get(model, 0) + 1
        kind, _, rest = model.partition("-")
        if model == "slow":
            script = script.with_overrides({"first_token_ms": 800, "gap_ms": 60, "tokens": 30})
        elif model == "tools":
            script = script.with_overrides({"tool_call": True})
        elif kind == "fail" and rest[:3].isdigit():
            script = script.with_overrides({"fail_status": int(rest[:3])})
        elif kind == "flaky" and rest[:3].isdigit():
            failures = rest[4:].split("-", 1)[0]
            if count <= (int(failures) if failures.isdigit() else 1):
                script = script.with_overrides({"fail_status": int(rest[:3])})
        elif kind == "slow" and rest.split("-", 1)[0].isdigit():
            script = script.with_overrides({"first_token_ms": int(rest.split("-", 1)[0])})
        elif kind == "throws" and rest:
            exception, _, tail = rest.partition("-")
            times = tail.split("-", 1)[0]  # anything after the count keeps a test's model name its own
            if not times.isdigit() or count <= int(times):
                script = script.with_overrides({"error_after": 0, "error_type": exception})
        return script.with_overrides(body.get("simulator"))


async def json_response(send: Send, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(payload).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


async def start_event_stream(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})


async def _read_body(receive: Callable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _lifespan(receive: Callable, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
