"""The HTTP around an adapter's call: send one request, read its answer, and fail as UpstreamError.

The hop itself is `transport.client.UpstreamClient`'s (an asyncio protocol over httptools' llhttp parser);
adapters never see a socket. Everything here closes the response it was handed before it raises.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from switchboard.providers.errors import error_from_status, scrub_bytes
from switchboard.providers.transport.client import UpstreamClient
from switchboard.providers.transport.errors import READ_ERRORS, ConnectFailed, Timeout, TransportError, read_error
from switchboard.providers.transport.response import MAX_ERROR_BODY, UpstreamResponse
from switchboard.wire.chat import UpstreamError
from switchboard.wire.sse import EventTooLarge, SSEDecoder

SseEvent = tuple[bytes, bytes]  # (event name, data), as SSEDecoder gives them


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)  # keys in the headers: scrubbed from any error text


async def post(client: UpstreamClient, url: str, headers: dict[str, str], body: bytes,
               provider: str) -> UpstreamResponse:
    """POST and return the response whatever its status; a failure of the hop itself raises UpstreamError."""
    try:
        return await client.post(url, headers, body)
    except Timeout:
        raise UpstreamError(504, f"Upstream provider '{provider}' timed out.", kind="timeout") from None
    except ConnectFailed as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' is unreachable ({exc}).",
                            kind="connect_error") from None
    except TransportError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent a broken response ({exc}).",
                            kind="protocol_error") from None


async def send(client: UpstreamClient, request: UpstreamRequest, provider: str) -> UpstreamResponse:
    """Send and return a streaming response with a 2xx status, or raise UpstreamError."""
    response = await post(client, request.url, request.headers, request.body, provider)
    if response.status >= 300:
        raw = await read_error_body(response, request.secrets)
        raise error_from_status(response.status, raw, provider, response.headers.get("retry-after"),
                                request.secrets)
    return response


async def read_error_body(response: UpstreamResponse, secrets: tuple[str | None, ...]) -> bytes:
    """An error answer's body, capped and scrubbed of `secrets` before anything parses it; the response is
    closed either way (what is left of a refused body is never worth reading)."""
    try:
        raw = await response.read(MAX_ERROR_BODY)
    except TransportError:
        raw = b""
    finally:
        response.close()
    return scrub_bytes(raw, secrets, cut=len(raw) >= MAX_ERROR_BODY)


async def read_body(response: UpstreamResponse, provider: str, limit: int) -> bytes:
    """The whole (non-streamed) body, at most `limit` bytes; the response is closed either way."""
    try:
        raw = await response.read(limit + 1)
    except Timeout:
        raise UpstreamError(504, f"Upstream provider '{provider}' timed out.", kind="timeout") from None
    except TransportError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' broke the response ({exc}).",
                            kind="stream_error") from None
    finally:
        response.close()
    if len(raw) > limit:
        raise UpstreamError(502, f"Upstream provider '{provider}' answered with more than {limit} bytes.",
                            kind="stream_error")
    return raw


async def read_json(response: UpstreamResponse, provider: str, limit: int) -> object:
    """The whole body decoded as JSON, or None when it is not JSON; the response is closed either way."""
    raw = await read_body(response, provider, limit)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def broken_read(provider: str, exc: TransportError) -> UpstreamError:
    """A streamed body that stopped (read timeout) or broke (framing, a cut connection) part way."""
    if isinstance(exc, Timeout):
        return UpstreamError(504, f"Upstream provider '{provider}' stopped sending (read timeout).", kind="timeout")
    return UpstreamError(502, f"Upstream provider '{provider}' broke the stream ({exc}).", kind="stream_error")


async def read_events(response: UpstreamResponse, provider: str) -> AsyncGenerator[list[SseEvent], None]:
    """SSE events as the socket delivers them, a list per read; a broken or truncated stream raises UpstreamError.

    Keeping a read's events together lets the relay answer them with one write: an upstream that
    bursts twenty tokens costs one send, not twenty.
    """
    decoder = SSEDecoder()
    feed, readany = decoder.feed, response.readany
    try:
        while data := await readany():
            events = feed(data)
            if events:
                yield events
    except READ_ERRORS as exc:
        raise broken_read(provider, read_error(exc)) from None
    except EventTooLarge as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent {exc}.", kind="stream_error") from None
    if decoder.pending:
        raise UpstreamError(502, f"Upstream provider '{provider}' ended the stream mid-event.",
                            kind="stream_error")
