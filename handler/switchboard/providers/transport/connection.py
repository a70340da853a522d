"""One upstream socket (an asyncio Protocol): one exchange at a time, its bytes fed to that exchange's parser,
and one timer for both the read timeout and the idle expiry."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade

from switchboard.providers.transport.errors import ProtocolError, Timeout
from switchboard.providers.transport.response import MAX_HEAD_BYTES, Refused, UpstreamResponse

if TYPE_CHECKING:
    from switchboard.providers.transport.client import UpstreamClient

KEEPALIVE_S = 60.0  # an idle pooled connection older than this is closed


class Connection(asyncio.Protocol):
    """One upstream socket: one exchange at a time, its bytes fed to that exchange's parser."""

    def __init__(self, client: UpstreamClient, key: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.key = key
        self.loop = loop  # the client's: a connection belongs to the loop it was made on
        self.transport: asyncio.Transport | None = None
        self.exchange: UpstreamResponse | None = None
        self.head_bytes = 0  # what arrived for the current exchange before its head was complete
        self.last_activity = 0.0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.keep_alive = False
        self.paused = False
        self.closed = False

    # --- asyncio's side ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        exchange = self.exchange
        if exchange is None or exchange._complete:  # nobody asked: an idle 408, a stray response, padding
            self.close()
            return
        if exchange._head is not None:
            self.head_bytes += len(data)
        try:
            exchange._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade, Refused) as exc:
            exchange._fail(ProtocolError(_parser_reason(exc)))
            self.close()
            return
        if exchange._complete:
            if self.keep_alive and exchange._padded(data):
                self.keep_alive = False
        elif exchange._head is not None and self.head_bytes > MAX_HEAD_BYTES:  # a head that never ends
            exchange._fail(ProtocolError("the response head is too large"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self.client._forget(self)
        exchange = self.exchange
        if exchange is None or exchange._complete or exchange._error is not None:
            return
        if exchange._head is not None:
            if self.head_bytes == 0:
                exchange._fail(Stale())
            else:
                exchange._fail(ProtocolError("the connection closed mid-head"))
        elif exchange._ended_by_close():
            exchange._complete = True  # a close-delimited body: its end is the close
            exchange._wake()
        else:
            exchange._fail(ProtocolError("the connection closed mid-body"), discard=False)

    # --- the client's side ---------------------------------------------------------------------------------

    async def send(self, payload: bytes) -> UpstreamResponse:
        """Write one request (head and body in one write) and wait for its response's head."""
        exchange = self.exchange = UpstreamResponse(self)
        self.head_bytes = 0
        self.keep_alive = False
        now = self.last_activity = self.loop.time()
        deadline = now + self.client.read_timeout
        if self.timer is None or self.timer.when() > deadline:
            self._stop_timer()
            self.timer = self.loop.call_at(deadline, self._tick)
        head = exchange._head
        self.transport.write(payload)  # type: ignore[union-attr]
        try:
            await head  # type: ignore[misc]
        except BaseException:
            self.close()  # a cancelled or failed exchange leaves the socket in an unknown state
            raise
        return exchange

    def release(self, exchange: UpstreamResponse) -> None:
        """The exchange's body was read to its end: back to the pool, unless anything says otherwise."""
        if exchange is not self.exchange:
            return
        self.exchange = None
        if self.closed or not self.keep_alive or self.transport is None or self.transport.is_closing():
            self.close()
            return
        self.idle_since = self.loop.time()
        self.client._pool(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True
        self.client._forget(self)

    def abort(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # --- the one timer ---------------------------------------------------------------------------------------

    def _tick(self) -> None:
        """The read timeout and the idle expiry, both from stamps: rescheduled only when it fires."""
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        exchange = self.exchange
        if exchange is None:
            expiry = self.idle_since + KEEPALIVE_S
            if now >= expiry:
                self.close()
                return
            self.timer = self.loop.call_at(expiry, self._tick)
            return
        waiting = exchange._head is not None or exchange._waiter is not None
        silent_until = self.last_activity + self.client.read_timeout
        if waiting and now >= silent_until - 0.001:
            if exchange._head is not None:
                exchange._fail(Timeout("timed out waiting for the response"))
            else:
                exchange._fail(Timeout("read timed out"), discard=False)
            self.close()
            return
        self.timer = self.loop.call_at(silent_until if waiting else now + self.client.read_timeout, self._tick)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Stale(Exception):
    """The server closed the connection before any response: retry once on a fresh one."""


def _parser_reason(exc: BaseException) -> str:
    """llhttp's reason (a fixed phrase, never the bytes it refused), or why a callback stopped it."""
    context = exc.__context__
    if isinstance(exc, Refused) or isinstance(context, Refused):
        return "a response nobody asked for, or a status the gateway refuses"
    if isinstance(exc, HttpParserUpgrade):
        return "the server switched protocols"
    return f"malformed response: {str(exc)[:100]}"
