"""SSEDecoder under hostile input: linear time however the bytes are sliced, and one event capped.

An upstream decides how its stream is cut into reads. If each feed re-copied or re-searched what is
already buffered, a host trickling one long event a byte at a time would cost quadratic CPU on the
gateway's only event loop, stalling every other call. Timings are compared with each other (4x the
bytes must cost well under 8x the time), never with an absolute budget.
"""

from __future__ import annotations

import gc
import time

import pytest

from switchboard.wire.sse import SSEDecoder

KIB = 1024
MIB = 1024 * KIB
RATIO_LIMIT = 8.0  # linear is 4x for 4x the bytes; quadratic is 16x


def one_long_line(size: int) -> tuple[bytes, bytes]:
    """The start of one event (a single `data:` line `size` bytes long, not yet terminated), and its data."""
    return b"data: " + b"a" * (size - 6), b"a" * (size - 6)


def many_crlf_lines(size: int) -> tuple[bytes, bytes]:
    """The start of one event made of many CRLF-ended `data:` lines, no blank line yet, and its data."""
    count = size // 16
    return b"data: aaaaaaaa\r\n" * count, b"\n".join([b"aaaaaaaa"] * count)


def feed_timed(stream: bytes, piece: int, give_up_after_s: float) -> tuple[float, SSEDecoder, list]:
    """Seconds to feed `stream` in `piece`-byte slices, or infinity once past `give_up_after_s`
    (a quadratic decoder would otherwise keep the test running for minutes)."""
    pieces = [stream[i:i + piece] for i in range(0, len(stream), piece)]
    decoder = SSEDecoder()
    events: list = []
    gc.disable()
    try:
        started = time.perf_counter()
        for index, data in enumerate(pieces):
            events += decoder.feed(data)
            if index % 1024 == 0 and time.perf_counter() - started > give_up_after_s:
                return float("inf"), decoder, events
        return time.perf_counter() - started, decoder, events
    finally:
        gc.enable()


@pytest.mark.parametrize(("make", "piece", "small"), [
    (one_long_line, 1, 16 * KIB),
    (many_crlf_lines, 7, 128 * KIB),  # 7: pieces split the CRLFs at every offset
], ids=["long-line-1-byte-pieces", "crlf-lines-7-byte-pieces"])
def test_an_unterminated_event_costs_linear_time_however_it_is_sliced(make, piece, small):
    large = 4 * small
    small_s = min(feed_timed(make(small)[0], piece, give_up_after_s=60)[0] for _ in range(5))
    stream, expected = make(large)
    for _attempt in range(3):  # retries: a neighbour's burst on a shared machine is not the decoder's fault
        large_s, decoder, events = feed_timed(stream, piece, give_up_after_s=RATIO_LIMIT * small_s)
        if large_s < RATIO_LIMIT * small_s:
            break
    assert large_s < RATIO_LIMIT * small_s, (
        f"4x the bytes took more than {RATIO_LIMIT:.0f}x the time ({small_s * 1000:.0f} ms for the smaller run)")
    assert events == [] and decoder.pending
    assert decoder.feed(b"\n\n") == [(b"", expected)]  # and the event comes out whole once it ends
    assert decoder.pending == b""


def test_a_crlf_split_between_reads_does_not_end_the_event():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []  # CR|LF is one line end, not two
    assert decoder.feed(b"\n\r\n") == [(b"", b"a\nb")]


def test_many_events_fed_byte_by_byte_come_out_whole_and_in_order():
    stream = b"".join(b'data: {"n": %d}\r\n\r\n: ping\n\nevent: x\ndata: a\ndata: b\n\n' % n for n in range(300))
    decoder = SSEDecoder()
    events = [event for i in range(len(stream)) for event in decoder.feed(stream[i:i + 1])]
    assert events[0::2] == [(b"", b'{"n": %d}' % n) for n in range(300)]
    assert events[1::2] == [(b"x", b"a\nb")] * 300
    assert decoder.pending == b""


def test_an_event_that_never_ends_is_refused_past_1_mib():
    decoder = SSEDecoder()
    decoder.feed(b"data: ")
    with pytest.raises(ValueError):
        for _ in range(40):  # 2.5 MiB in 64 KiB reads: memory must stop growing long before the end
            decoder.feed(b"a" * 64 * KIB)


def test_a_whole_event_over_1_mib_is_refused():
    with pytest.raises(ValueError):
        SSEDecoder().feed(b"data: " + b"a" * (2 * MIB) + b"\n\n")


def test_an_event_just_under_1_mib_is_delivered():
    data = b"a" * (MIB - 64)
    assert SSEDecoder().feed(b"data: " + data + b"\n\n") == [(b"", data)]
