"""Every OpenAI-compatible host: a pass-through that forwards chunks byte for byte.

Provider quirks live here, keyed by provider name, not in the relay.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from switchboard.protocol import dumps
from switchboard.providers.base import Chunk, UpstreamError, read_events, send
from switchboard.routing import Route
from switchboard.settings import Settings


def _request(client: httpx.AsyncClient, route: Route, body: dict, stream: bool) -> httpx.Request:
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
    return client.build_request("POST", f"{route.base_url}/chat/completions", content=dumps(payload),
                                headers=headers)


async def stream(client: httpx.AsyncClient, route: Route, body: dict, settings: Settings) -> AsyncIterator[Chunk]:
    response = await send(client, _request(client, route, body, stream=True), route.provider)
    finished = False  # a finish_reason was seen
    done = False
    try:
        async for _event, data in read_events(response, route.provider, _is_done):
            if data == b"[DONE]":
                done = True
                continue
            try:
                parsed = json.loads(data)
            except ValueError:
                raise UpstreamError(502, f"Upstream provider '{route.provider}' sent a chunk that is not JSON.",
                                    kind="stream_error") from None
            if not isinstance(parsed, dict):
                continue
            if "error" in parsed and "choices" not in parsed:
                raise UpstreamError(502, f"Upstream provider '{route.provider}' failed mid-stream: "
                                    + _error_text(parsed["error"]), kind="stream_error")
            if not finished:
                choices = parsed.get("choices")
                finished = bool(choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"))
            yield data, parsed
    finally:
        await response.aclose()
    if not (finished or done):  # closed cleanly, but before the answer was complete
        raise UpstreamError(502, f"Upstream provider '{route.provider}' ended the stream before finishing.",
                            kind="stream_error")


async def complete(client: httpx.AsyncClient, route: Route, body: dict, settings: Settings) -> dict:
    response = await send(client, _request(client, route, body, stream=False), route.provider)
    try:
        raw = await response.aread()
    except httpx.TimeoutException:
        raise UpstreamError(504, f"Upstream provider '{route.provider}' timed out.", kind="timeout") from None
    except httpx.HTTPError as exc:
        raise UpstreamError(502, f"Upstream provider '{route.provider}' broke the response "
                            f"({type(exc).__name__}).", kind="stream_error") from None
    finally:
        await response.aclose()
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
