"""Every failure of the upstream hop is one of three exceptions, all TransportError:

  TransportError
    ConnectFailed   no connection: the host does not resolve, refuses, or fails TLS (or the proxy does)
    Timeout         the connect, the response head, or a body read waited past its limit
    ProtocolError   the peer broke HTTP/1.1: malformed framing, or the connection closed mid-body

Their messages never hold the URL, an address or a header: a URL may carry a caller's key in its query.
"""

from __future__ import annotations

import ssl


class TransportError(Exception):
    """Any failure of the upstream hop."""


class ConnectFailed(TransportError):
    pass


class Timeout(TransportError):
    pass


class ProtocolError(TransportError):
    """The peer broke HTTP/1.1: malformed framing, or the connection closed mid-body."""


READ_ERRORS: tuple[type[BaseException], ...] = (TransportError,)


def read_error(exc: BaseException) -> TransportError:
    """A failed body read (one of READ_ERRORS) as the transport's own error."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, TimeoutError):
        return Timeout("read timed out")
    return ProtocolError(describe(exc))


def describe(exc: BaseException) -> str:
    """A short reason without the URL, the address or headers (a URL may carry a caller's key in its query)."""
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    if isinstance(reason, str) and reason:
        return f"{type(exc).__name__}: {reason}"[:200]
    return type(exc).__name__
