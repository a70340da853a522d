"""What every adapter shares: the upstream error type and the HTTP plumbing around it.

An adapter module exposes two coroutines:
  * `stream(client, route, body, settings)`: an async iterator of batches of OpenAI chunks, one
    batch (a non-empty list) per upstream read, each chunk a `(json_bytes, parsed_dict)` pair. It
    raises `UpstreamError` before its first batch when the upstream refuses or cannot be reached,
    and mid-stream when the stream breaks.
  * `complete(client, route, body, settings)`: one `chat.completion` dict.
`body` is the client's request, already cleaned by `switchboard.request`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from switchboard.protocol import GatewayError
from switchboard.providers import http1

Chunk = tuple[bytes, dict]
Batch = list[Chunk]


class UpstreamError(Exception):
    """The upstream failed. `status` is what the client gets: the upstream's own 4xx, else 502/504."""

    def __init__(self, status: int, message: str, *, kind: str, upstream_status: int | None = None,
                 retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind  # http_error | connect_error | timeout | stream_error
        self.upstream_status = upstream_status
        self.retry_after = retry_after

    def to_gateway_error(self) -> GatewayError:
        headers = {"retry-after": self.retry_after} if self.retry_after else None
        code = f"upstream_{self.upstream_status}" if self.upstream_status else self.kind
        return GatewayError(self.status, self.message, code=code, headers=headers)


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)


async def send(client: http1.Pool, request: UpstreamRequest, provider: str) -> http1.Response:
    """Send and return a streaming response with a 2xx status, or raise UpstreamError."""
    try:
        response = await client.request("POST", request.url, request.headers, request.body)
    except http1.Timeout:
        raise UpstreamError(504, f"Upstream provider '{provider}' timed out.", kind="timeout") from None
    except http1.HTTPError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' is unreachable ({type(exc).__name__}).",
                            kind="connect_error") from None
    if response.status_code >= 300:
        try:
            raw = await response.aread()
        except http1.HTTPError:
            raw = b""
        finally:
            await response.aclose()
        raise error_from_status(response.status_code, raw, provider, response.headers.get("retry-after"))
    return response


async def read_body(response: http1.Response, provider: str) -> bytes:
    """The whole (non-streamed) body; the response is closed either way."""
    try:
        return await response.aread()
    except http1.Timeout:
        raise UpstreamError(504, f"Upstream provider '{provider}' timed out.", kind="timeout") from None
    except http1.HTTPError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' broke the response ({type(exc).__name__}).",
                            kind="stream_error") from None
    finally:
        await response.aclose()


def error_from_status(status: int, raw: bytes, provider: str, retry_after: str | None = None) -> UpstreamError:
    message = upstream_message(raw) or f"HTTP {status}"
    text = f"Upstream provider '{provider}' returned {status}: {message}"
    if status < 400:  # redirects are never followed: they could point anywhere, the metadata address included
        return UpstreamError(502, text + " (redirect not followed)", kind="redirect_refused", upstream_status=status)
    if 400 <= status < 500:
        return UpstreamError(status, text, kind="http_error", upstream_status=status, retry_after=retry_after)
    return UpstreamError(502, text, kind="http_error", upstream_status=status, retry_after=retry_after)


def upstream_message(raw: bytes) -> str:
    """The human message in an upstream error body (OpenAI and Anthropic shapes), size-capped."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace").strip()
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "")[:1000]
    if isinstance(error, str):
        return error[:1000]
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])[:1000]
    return ""


async def read_events(response: http1.Response, provider: str, is_last: Callable[[bytes, bytes], bool] | None = None
                      ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
    """SSE events as the socket delivers them, a list per read; a broken or truncated stream raises UpstreamError.

    Keeping a read's events together lets the relay answer them with one write: an upstream that
    bursts twenty tokens costs one send, not twenty.

    After the event `is_last` recognises, the rest of the body (normally just the end of the chunked
    encoding) is read so that the connection goes back to its pool: closing a response early drops
    the connection, and the next call would pay for a new one, a TLS handshake included.
    """
    from switchboard.protocol import SSEDecoder

    decoder = SSEDecoder()
    body = response.aiter_bytes()
    try:
        async for data in body:
            events = decoder.feed(data)
            if not events:
                continue
            yield events
            if is_last is not None and is_last(*events[-1]):
                await _drain(body)
                return
    except http1.Timeout:
        raise UpstreamError(504, f"Upstream provider '{provider}' stopped sending (read timeout).",
                            kind="timeout") from None
    except http1.HTTPError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' broke the stream ({type(exc).__name__}).",
                            kind="stream_error") from None
    if decoder.pending:
        raise UpstreamError(502, f"Upstream provider '{provider}' ended the stream mid-event.",
                            kind="stream_error")


async def _drain(body: AsyncIterator[bytes], timeout_s: float = 0.25) -> None:
    """Read what follows the last event, briefly; a host that keeps talking just loses its connection."""
    async def read_rest() -> None:
        async for _ in body:
            pass

    try:
        await asyncio.wait_for(read_rest(), timeout_s)
    except (TimeoutError, http1.HTTPError):
        pass
