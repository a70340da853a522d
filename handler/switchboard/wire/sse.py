"""Server-sent events: framing what the gateway writes, and decoding what upstreams send (with a cap per event).

No maintained library fits a raw byte stream with per-event caps, so this decoder is the one protocol parser
written here."""

from __future__ import annotations

SSE_DONE = b"data: [DONE]\n\n"


SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


MAX_EVENT_BYTES = 1024 * 1024


class EventTooLarge(ValueError):
    """One SSE event grew past the decoder's cap: a broken or hostile upstream."""


class SSEDecoder:
    """Incremental Server-Sent Events parser, linear in the bytes fed and capped per event.

    `feed` takes whatever bytes the socket delivered and returns the complete events in them as
    `(event_name, data)` pairs; a partial event waits for the next read. Handles CRLF, multi-line
    data and comment lines, which some OpenAI-compatible hosts send as keep-alives. Bytes already
    searched are never searched again, and an event larger than `max_event_bytes` raises EventTooLarge.
    """

    __slots__ = ("_buffer", "_scanned", "_held_cr", "max_event_bytes")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold no event terminator
        self._held_cr = False  # the last feed ended in CR: it may be half of a CRLF
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        if self._held_cr:
            chunk, self._held_cr = b"\r" + chunk, False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                chunk, self._held_cr = chunk[:-1], True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        data: bytes | bytearray
        if self._buffer:
            self._buffer += chunk
            data, search_from = self._buffer, max(self._scanned - 1, 0)
        else:  # the common case: this read starts at an event boundary, no copy needed
            data, search_from = chunk, 0
        events: list[tuple[bytes, bytes]] = []
        start = 0
        while (end := data.find(b"\n\n", search_from)) >= 0:
            if end - start > self.max_event_bytes:
                raise EventTooLarge(f"an event larger than {self.max_event_bytes} bytes")
            event = _parse_block(bytes(data[start:end]))
            if event is not None:
                events.append(event)
            start = search_from = end + 2
        if data is self._buffer:
            del self._buffer[:start]
        else:
            self._buffer = bytearray(data[start:])
        self._scanned = len(self._buffer)
        if self._scanned > self.max_event_bytes:
            raise EventTooLarge(f"an event larger than {self.max_event_bytes} bytes")
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not been terminated (non-empty at EOF means a cut stream)."""
        return bytes(self._buffer).strip()


def _parse_block(block: bytes) -> tuple[bytes, bytes] | None:
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case, one line
        return b"", block[6:]
    name = b""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data:
        return None
    return name, b"\n".join(data)
