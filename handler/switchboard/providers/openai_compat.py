"""Every OpenAI-compatible host: a pass-through that forwards chunks byte for byte.

Provider quirks live here, keyed by provider name, not in the relay.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from switchboard.protocol import dumps
from switchboard.providers.base import Batch, UpstreamError, UpstreamRequest, read_body, read_events, send
from switchboard.providers.http1 import Pool
from switchboard.routing import Route
from switchboard.settings import Settings


def _request(route: Route, body: dict, stream: bool) -> UpstreamRequest:
    payload = dict(body)
    payload["model"] = route.model
    payload["stream"] = stream
    if stream:
        # Always ask for usage: the ledger needs token counts whether or not the client wants them.
        options = dict(payload.get("stream_options") or {})
        options["include_usage"] = True
        payload["stream_options"] = options
    else:
        payload.pop("stream_options", None)
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if route.api_key:
        headers["authorization"] = f"Bearer {route.api_key}"
    if stream:
        headers["accept"] = "text/event-stream"
    return UpstreamRequest(f"{route.base_url}/chat/completions", headers, dumps(payload))


async def stream(client: Pool, route: Route, body: dict, settings: Settings) -> AsyncIterator[Batch]:
    response = await send(client, _request(route, body, stream=True), route.provider)
    finished = False  # a finish_reason was seen
    done = False
    try:
        async for events in read_events(response, route.provider, _is_done):
            batch: Batch = []
            for _event, data in events:
                if data == b"[DONE]":
                    done = True
                    continue
                parsed = _parse(data, route.provider)
                if parsed is None:
                    continue
                if not finished:
                    choices = parsed.get("choices")
                    finished = bool(choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"))
                batch.append((data, parsed))
            if batch:
                yield batch
    finally:
        await response.aclose()
    if not (finished or done):  # closed cleanly, but before the answer was complete
        raise UpstreamError(502, f"Upstream provider '{route.provider}' ended the stream before finishing.",
                            kind="stream_error")


def _parse(data: bytes, provider: str) -> dict | None:
    try:
        parsed = json.loads(data)
    except ValueError:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent a chunk that is not JSON.",
                            kind="stream_error") from None
    if not isinstance(parsed, dict):
        return None
    if "error" in parsed and "choices" not in parsed:
        raise UpstreamError(502, f"Upstream provider '{provider}' failed mid-stream: " + _error_text(parsed["error"]),
                            kind="stream_error")
    return parsed


async def complete(client: Pool, route: Route, body: dict, settings: Settings) -> dict:
    response = await send(client, _request(route, body, stream=False), route.provider)
    raw = await read_body(response, route.provider)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(502, f"Upstream provider '{route.provider}' answered with something that is not "
                            "a chat completion.", kind="http_error")
    return parsed


def _is_done(_name: bytes, data: bytes) -> bool:
    return data == b"[DONE]"


def _error_text(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "error")[:1000]
    return str(error)[:1000]
