"""What every adapter shares: the upstream error type and the HTTP plumbing around it.

An adapter module exposes two coroutines:
  * `stream(client, route, body, settings)`: an async iterator of batches of OpenAI chunks, one
    batch (a non-empty list) per upstream read, each chunk a `(json_bytes, parsed_dict)` pair. It
    raises `UpstreamError` before its first batch when the upstream refuses or cannot be reached,
    and mid-stream when the stream breaks.
  * `complete(client, route, body, settings)`: one `chat.completion` dict.
`body` is the client's request, already cleaned by `switchboard.formats.chat_completions`. The HTTP itself is
`transport.UpstreamClient`'s (an asyncio protocol over httptools' llhttp parser); adapters never see a socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from switchboard.providers import transport
from switchboard.providers.transport import UpstreamClient, UpstreamResponse
from switchboard.wire.chat import UpstreamError
from switchboard.wire.sse import EventTooLarge, SSEDecoder


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)  # keys in the headers: scrubbed from any error text


MIN_FRAGMENT = 8  # a key's piece this long, left at a cut, is still worth something to whoever reads it


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """An upstream's error text without the keys we sent it (some hosts echo the Authorization header)."""
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def scrub_bytes(raw: bytes, secrets: Iterable[str | None], *, cut: bool = False) -> bytes:
    """`raw` as the upstream sent it, minus every key, before anything parses, cuts or wraps it. With `cut`
    (the read stopped at a cap), a key's first characters left at the end are removed too."""
    encoded = [secret.encode() for secret in secrets if secret and len(secret) >= 6]
    for secret in encoded:
        if secret in raw:
            raw = raw.replace(secret, b"[redacted]")
    return _trim_fragment(raw, encoded) if cut else raw


def clip(text: str, limit: int, secrets: Iterable[str | None]) -> str:
    """`text` scrubbed, then cut to `limit` characters without leaving a key's first characters at the cut."""
    text = scrub(text, secrets)
    if len(text) <= limit:
        return text
    return _trim_fragment(text[:limit], [s for s in secrets if s and len(s) >= 6])


def _trim_fragment(text, secrets: list):  # str with str secrets, bytes with bytes secrets
    """Drop a tail of `text` that is the start (MIN_FRAGMENT characters or more) of a secret."""
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), MIN_FRAGMENT - 1, -1):
            if text.endswith(secret[:size]):
                text = text[:-size]
                break
    return text


async def post(client: UpstreamClient, url: str, headers: dict[str, str], body: bytes,
               provider: str) -> UpstreamResponse:
    """POST and return the response whatever its status; a failure of the hop itself raises UpstreamError."""
    try:
        return await client.post(url, headers, body)
    except transport.Timeout:
        raise UpstreamError(504, f"Upstream provider '{provider}' timed out.", kind="timeout") from None
    except transport.ConnectFailed as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' is unreachable ({exc}).",
                            kind="connect_error") from None
    except transport.TransportError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent a broken response ({exc}).",
                            kind="protocol_error") from None


async def send(client: UpstreamClient, request: UpstreamRequest, provider: str) -> UpstreamResponse:
    """Send and return a streaming response with a 2xx status, or raise UpstreamError."""
    response = await post(client, request.url, request.headers, request.body, provider)
    if response.status >= 300:
        try:
            raw = await response.read(transport.MAX_ERROR_BODY)
        except transport.TransportError:
            raw = b""
        finally:
            response.close()
        raw = scrub_bytes(raw, request.secrets, cut=len(raw) >= transport.MAX_ERROR_BODY)
        raise error_from_status(response.status, raw, provider, response.headers.get("retry-after"),
                                request.secrets)
    return response


async def read_body(response: UpstreamResponse, provider: str, limit: int) -> bytes:
    """The whole (non-streamed) body, at most `limit` bytes; the response is closed either way."""
    try:
        raw = await response.read(limit + 1)
    except transport.Timeout:
        raise UpstreamError(504, f"Upstream provider '{provider}' timed out.", kind="timeout") from None
    except transport.TransportError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' broke the response ({exc}).",
                            kind="stream_error") from None
    finally:
        response.close()
    if len(raw) > limit:
        raise UpstreamError(502, f"Upstream provider '{provider}' answered with more than {limit} bytes.",
                            kind="stream_error")
    return raw


def error_from_status(status: int, raw: bytes, provider: str, retry_after: str | None = None,
                      secrets: Iterable[str | None] = ()) -> UpstreamError:
    """`raw` has had the keys scrubbed already (`scrub_bytes`); the message is scrubbed again once decoded
    (a JSON escape can hide a key from the byte scan) and cut without leaving a key's first characters."""
    message = upstream_message(raw, secrets) or f"HTTP {status}"
    text = f"Upstream provider '{provider}' returned {status}: {message}"
    if status < 400:  # redirects are never followed: they could point anywhere, the metadata address included
        return UpstreamError(502, text + " (redirect not followed)", kind="redirect_refused", upstream_status=status)
    if 400 <= status < 500:
        return UpstreamError(status, text, kind="http_error", upstream_status=status, retry_after=retry_after)
    return UpstreamError(502, text, kind="http_error", upstream_status=status, retry_after=retry_after)


def upstream_message(raw: bytes, secrets: Iterable[str | None] = ()) -> str:
    """The human message in an upstream error body (OpenAI and Anthropic shapes), scrubbed and size-capped."""
    secrets = tuple(secrets)
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return clip(raw[:600].decode("utf-8", "replace"), 300, secrets).strip()
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return clip(str(error.get("message") or error.get("type") or ""), 1000, secrets)
    if isinstance(error, str):
        return clip(error, 1000, secrets)
    if isinstance(parsed, dict) and parsed.get("message"):
        return clip(str(parsed["message"]), 1000, secrets)
    return ""


def declared_status(parsed: dict, error: object) -> int | None:
    """The HTTP status an in-stream error event declares for itself, if any (a 4xx is the caller's fault)."""
    for holder in (error, parsed):
        if isinstance(holder, dict):
            for name in ("status", "status_code", "code"):
                value = holder.get(name)
                if isinstance(value, str) and value.isdigit():
                    value = int(value)
                if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
                    return value
    if isinstance(error, dict) and error.get("type") == "invalid_request_error":
        return 400
    return None


def in_stream_error(provider: str, raw: bytes, secrets: Iterable[str | None],
                    status: int | None = None) -> UpstreamError:
    """An error event inside a 200 stream, from its raw bytes (scrubbed before they are parsed): its declared
    4xx is passed on (and not retried), else a 502. `status` is what the event's type means, when the caller
    knows (Anthropic's error types). The upstream's usage, if the event carries it, rides along."""
    secrets = tuple(secrets)
    try:
        parsed = json.loads(scrub_bytes(raw, secrets))
    except (ValueError, RecursionError):
        parsed = None
    parsed = parsed if isinstance(parsed, dict) else {}
    error = parsed.get("error")
    message = f"Upstream provider '{provider}' failed mid-stream: {clip(error_text(error, None), 1000, secrets)}"
    if status is None:
        status = declared_status(parsed, error)
    if status is not None and status < 500:
        failure = UpstreamError(status, message, kind="http_error", upstream_status=status)
    else:
        failure = UpstreamError(502, message, kind="stream_error", upstream_status=status)
    usage = parsed.get("usage")
    failure.usage = usage if isinstance(usage, dict) else None
    return failure


# --- shapes every translating adapter (Anthropic, Bedrock) shares --------------------------------------------


def tool_arguments(arguments: object) -> dict:
    """An OpenAI tool call's `arguments` (a JSON string) as the object providers with native tool input want."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def broken_read(provider: str, exc: transport.TransportError) -> UpstreamError:
    """A streamed body that stopped (read timeout) or broke (framing, a cut connection) part way."""
    if isinstance(exc, transport.Timeout):
        return UpstreamError(504, f"Upstream provider '{provider}' stopped sending (read timeout).", kind="timeout")
    return UpstreamError(502, f"Upstream provider '{provider}' broke the stream ({exc}).", kind="stream_error")


def as_dict(value: object) -> dict:
    """A field of an upstream event that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def error_text(error: object, limit: int | None = 1000) -> str:
    """An error object's message; cut to `limit` characters (None: whole, for a caller that scrubs and cuts)."""
    if isinstance(error, dict):
        text = str(error.get("message") or error.get("type") or "error")
    else:
        text = str(error or "error")
    return text if limit is None else text[:limit]


async def read_events(response: UpstreamResponse, provider: str, is_last: Callable[[bytes, bytes], bool] | None = None
                      ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
    """SSE events as the socket delivers them, a list per read; a broken or truncated stream raises UpstreamError.

    Keeping a read's events together lets the relay answer them with one write: an upstream that
    bursts twenty tokens costs one send, not twenty.

    After the event `is_last` recognises, the rest of the body (normally just the end of the chunked
    encoding) is read so that the connection goes back to its pool: closing a response early drops
    the connection, and the next call would pay for a new one, a TLS handshake included.
    """
    decoder = SSEDecoder()
    feed, readany = decoder.feed, response.readany
    try:
        while data := await readany():
            events = feed(data)
            if not events:
                continue
            yield events
            if is_last is not None and is_last(*events[-1]):
                await response.drain()
                return
    except transport.READ_ERRORS as exc:
        raise broken_read(provider, transport.read_error(exc)) from None
    except EventTooLarge as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent {exc}.", kind="stream_error") from None
    if decoder.pending:
        raise UpstreamError(502, f"Upstream provider '{provider}' ended the stream mid-event.",
                            kind="stream_error")
