"""The response head rides with the first body bytes: one send to the client instead of two on the way to a first
token, and a head sent alone still goes out within the loop's turn."""

from __future__ import annotations

import asyncio

from switchboard.http.serving import HeadWithFirstBytes


class Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_the_head_and_the_first_bytes_are_one_write_and_the_rest_as_they_come():
    async def scenario() -> list[bytes]:
        transport = Recording()
        held = HeadWithFirstBytes(transport, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        held.write(b"5\r\nHello\r\n")
        await asyncio.sleep(0)
        held.write(b"0\r\n\r\n")
        return transport.writes

    assert asyncio.run(scenario()) == [b"HTTP/1.1 200 OK\r\n\r\n5\r\nHello\r\n", b"0\r\n\r\n"]


def test_a_head_alone_goes_out_at_the_end_of_the_loop_turn_and_before_a_close():
    async def alone() -> list[bytes]:
        transport = Recording()
        HeadWithFirstBytes(transport, asyncio.get_running_loop()).write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await asyncio.sleep(0)
        return transport.writes

    async def closed() -> tuple[list[bytes], bool]:
        transport = Recording()
        held = HeadWithFirstBytes(transport, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        held.close()
        await asyncio.sleep(0)
        return transport.writes, transport.closed

    assert asyncio.run(alone()) == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert asyncio.run(closed()) == ([b"HTTP/1.1 204 No Content\r\n\r\n"], True)
