"""One exchange's response: llhttp's callbacks fill its buffer, the adapter's reads empty it.

Nothing on or after a response is trusted: a second response nobody asked for, bytes past its end, a head
larger than MAX_HEAD_BYTES each end the exchange, and the connection is then closed, never pooled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from httptools import HttpResponseParser

from switchboard.providers.transport.errors import ProtocolError, TransportError

if TYPE_CHECKING:
    from switchboard.providers.transport.connection import Connection

MAX_ERROR_BODY = 64 * 1024
DRAIN_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024  # a response head (interim 1xx heads included) longer than this is refused
HIGH_WATER = 256 * 1024  # body bytes buffered unread before the socket stops being read


class _Headers(Mapping[str, str]):
    """A response's headers: read-only, keys lower-case, repeated headers joined with ", ". Decoded on first
    use: most responses are never asked for a header."""

    __slots__ = ("_raw", "_map")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._map: dict[str, str] | None = None

    def _mapping(self) -> dict[str, str]:
        if self._map is None:
            mapping: dict[str, str] = {}
            for name, value in self._raw:
                key, text = name.decode("latin-1").lower(), value.decode("latin-1")
                mapping[key] = f"{mapping[key]}, {text}" if key in mapping else text
            self._map = mapping
        return self._map

    def __getitem__(self, name: str) -> str:
        return self._mapping()[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return f"_Headers({list(self._mapping())})"  # names only: values may carry keys


class Refused(Exception):
    """Raised inside a parser callback to stop llhttp; the reason is already on the response."""


class UpstreamResponse:
    """A streamed response. Read it with `chunks()`, `readany` or `read()`, then `close()` (safe to call twice).

    It is also the parser's callback object for its one exchange: llhttp calls `on_body` with the body's bytes
    (chunked framing undone), which go into a buffer and wake the one waiting reader, nothing else.
    """

    __slots__ = ("_connection", "_loop", "_parser", "_raw_headers", "_header_bytes", "_head", "_buffer", "_buffered",
                 "_waiter", "_error", "_complete", "_interim", "_closed", "status", "headers")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._loop = connection.loop
        self._parser = HttpResponseParser(self)
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0  # of every head so far, interim ones included
        self._head: asyncio.Future[None] | None = self._loop.create_future()  # None once the head is in
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._complete = False  # the final response's body has ended
        self._interim = False  # the message being parsed is a 1xx
        self._closed = False
        self.status = 0
        self.headers: Mapping[str, str] = _Headers(self._raw_headers)

    # --- what llhttp calls ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second response nobody asked for
            raise Refused()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))
        self._header_bytes += len(name) + len(value)

    def on_headers_complete(self) -> None:
        if self._header_bytes > MAX_HEAD_BYTES:
            self._fail(ProtocolError("the response head is too large"))
            raise Refused()
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103 Early Hints): skipped
            self._interim = True
            self._raw_headers.clear()
            return
        if status == 101:
            self._fail(ProtocolError("the server switched protocols (101)"))
            raise Refused()
        if not 100 <= status <= 599:
            self._fail(ProtocolError(f"invalid status {status}"))
            raise Refused()
        self.status = status
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._buffered > HIGH_WATER:
            self._connection.pause()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        self._connection.keep_alive = self._parser.should_keep_alive()
        self._wake()

    # --- what the connection calls -------------------------------------------------------------------------

    def _fail(self, error: BaseException, *, discard: bool = True) -> None:
        """End the exchange with `error`: the head's waiter, or the body's reader, gets it at once."""
        if self._error is not None or self._complete:
            return
        self._error = error
        if discard:  # bytes parsed before a framing error are not to be trusted
            self._buffer.clear()
            self._buffered = 0
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _chunked(self) -> bool:
        for name, value in self._raw_headers:
            if name.lower() == b"transfer-encoding":
                return value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
        return False

    def _padded(self, data: bytes) -> bool:
        """Whether line ends followed the response's last byte in `data`, the read that completed it. llhttp skips
        them silently between messages; nothing is to follow a response, so the connection is not pooled.

        A response ends in exactly as many line ends as its last bytes hold: 4 ("0\r\n\r\n", or a head without
        a body), or those of a Content-Length body's last piece. A read of nothing but line ends cannot be told
        from a split terminator, so it counts as padded too (a connection lost, never a wrong answer)."""
        run = _line_ends_at_end(data)
        if run == len(data):
            return True
        if not self._chunked() and self._buffer:
            return run != _line_ends_at_end(self._buffer[-1])
        return run != 4

    def _ended_by_close(self) -> bool:
        """Whether a close ends this body cleanly: it has neither a length nor chunked framing."""
        for name, value in self._raw_headers:
            lowered = name.lower()
            if lowered == b"content-length":
                return False
            if lowered == b"transfer-encoding" and value.lower().rsplit(b",", 1)[-1].strip() == b"chunked":
                return False
        return True

    # --- the reader's side ---------------------------------------------------------------------------------

    async def _readany(self) -> bytes:
        while True:
            buffer = self._buffer
            if buffer:
                data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                self._buffered = 0
                connection = self._connection
                if connection.paused:
                    connection.resume()
                return data
            if self._error is not None:  # a framing error discarded the buffer: it is raised at once
                raise self._error
            if self._complete or self._closed:
                return b""
            connection = self._connection
            connection.last_activity = self._loop.time()  # silence is counted from when someone waits
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    @property
    def readany(self) -> Callable[[], Awaitable[bytes]]:
        """The next bytes of the body as they arrive (b"" at its end), for a reader that loops itself: what it
        raises is one of READ_ERRORS, to be mapped with `read_error`. One layer fewer than `chunks()`."""
        return self._readany

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as the socket delivers it (chunked framing already undone)."""
        readany = self._readany
        while data := await readany():
            yield data

    async def read(self, limit: int = MAX_ERROR_BODY) -> bytes:
        """At most `limit` bytes of the body; the rest is never read (the connection is then dropped)."""
        parts, size = [], 0
        readany = self._readany
        while size < limit and (data := await readany()):
            parts.append(data[: limit - size])
            size += len(parts[-1])
        return b"".join(parts)

    async def drain(self, timeout_s: float = 0.25) -> None:
        """Read what follows the last event (the chunked terminator) so the connection can be pooled."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.read(DRAIN_BYTES)
        except (TimeoutError, TransportError):
            pass

    def close(self) -> None:
        """Back to the pool only when the body was read to its end and nothing else is pending; otherwise the
        connection is closed."""
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if self._complete and not self._buffer and self._error is None:
            connection.release(self)
        else:
            connection.close()
        self._wake()


def _line_ends_at_end(data: bytes) -> int:
    """How many CR and LF bytes `data` ends with."""
    end = len(data)
    while end and data[end - 1] in (10, 13):
        end -= 1
    return len(data) - end
