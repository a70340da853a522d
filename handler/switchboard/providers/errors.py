"""An upstream's failures as UpstreamError, with every key we sent it scrubbed from what it says.

Some hosts echo the Authorization header, or a key, in an error body. Whatever an upstream says goes through
here before anything parses, cuts or wraps it: `scrub_bytes` as read, `scrub` again once decoded (a JSON escape
can hide a key from the byte scan), and `clip` cuts without leaving a key's first characters at the cut.

  error_from_status  an HTTP status that is not a 2xx (redirects are never followed: a 502)
  in_stream_error    an error event inside a 200 stream: its declared 4xx passed on, else a 502
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TypeVar

from switchboard.wire.chat import UpstreamError

MIN_FRAGMENT = 8  # a key's piece this long, left at a cut, is still worth something to whoever reads it
MIN_SECRET = 6  # shorter "keys" are not scrubbed: they would match ordinary words

Text = TypeVar("Text", str, bytes)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """An upstream's error text without the keys we sent it."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def scrub_bytes(raw: bytes, secrets: Iterable[str | None], *, cut: bool = False) -> bytes:
    """`raw` as the upstream sent it, minus every key, before anything parses, cuts or wraps it. With `cut`
    (the read stopped at a cap), a key's first characters left at the end are removed too."""
    encoded = [secret.encode() for secret in secrets if secret and len(secret) >= MIN_SECRET]
    for secret in encoded:
        if secret in raw:
            raw = raw.replace(secret, b"[redacted]")
    return _trim_fragment(raw, encoded) if cut else raw


def clip(text: str, limit: int, secrets: Iterable[str | None]) -> str:
    """`text` scrubbed, then cut to `limit` characters without leaving a key's first characters at the cut."""
    text = scrub(text, secrets)
    if len(text) <= limit:
        return text
    return _trim_fragment(text[:limit], [s for s in secrets if s and len(s) >= MIN_SECRET])


def _trim_fragment(text: Text, secrets: list[Text]) -> Text:
    """Drop a tail of `text` that is the start (MIN_FRAGMENT characters or more) of a secret."""
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), MIN_FRAGMENT - 1, -1):
            if text.endswith(secret[:size]):
                text = text[:-size]
                break
    return text


def error_from_status(status: int, raw: bytes, provider: str, retry_after: str | None = None,
                      secrets: Iterable[str | None] = ()) -> UpstreamError:
    """`raw` has had the keys scrubbed already (`scrub_bytes`); the message is scrubbed again once decoded
    and cut without leaving a key's first characters."""
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
        decoded = json.loads(scrub_bytes(raw, secrets))
    except (ValueError, RecursionError):
        decoded = None
    parsed = decoded if isinstance(decoded, dict) else {}
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


def error_text(error: object, limit: int | None = 1000) -> str:
    """An error object's message; cut to `limit` characters (None: whole, for a caller that scrubs and cuts)."""
    if isinstance(error, dict):
        text = str(error.get("message") or error.get("type") or "error")
    else:
        text = str(error or "error")
    return text if limit is None else text[:limit]
