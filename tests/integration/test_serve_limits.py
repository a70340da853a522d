"""`switchboard serve` caps request heads: 1 MB of headers gets a 431 at once, memory stays flat under many
such connections, and ordinary requests (large bodies, keep-alive) are untouched. The server is the real
command, run as a child process on a free loopback port against the embedded AWS emulation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import GATEWAY_KEY

MAX_HEAD_BYTES = 64 * 1024  # the contract: past 64 KiB of request line and headers, 431


class Served:
    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for the server process")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(local_aws, tmp_path_factory) -> Iterator[Served]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.update(local_aws.env(), SWITCHBOARD_API_KEYS=GATEWAY_KEY, SWITCHBOARD_ADMIN_KEYS="",
               SWITCHBOARD_HOME=str(tmp_path_factory.mktemp("serve-home")), PYTHONUNBUFFERED="1")
    log = tmp_path_factory.mktemp("serve-log") / "stderr.txt"
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "switchboard", "serve", "--simulator", "--port", str(port)],
                                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    server = Served(process, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"switchboard serve exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"switchboard serve did not start: {log.read_text()[-2000:]}"
            try:
                if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def head(path: str = "/health", headers: list[bytes] = (), end: bool = True) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers]
    return b"\r\n".join(lines) + (b"\r\n\r\n" if end else b"\r\n")


def send_and_read(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send `data` (as far as the server lets us), then read the answer until the server closes."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send: what matters is what came back
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, time.monotonic() - started


def chat(client: httpx.Client, served: Served, content: str, **headers: str) -> httpx.Response:
    return client.post(served.url + "/v1/chat/completions", timeout=20,
                       headers={"authorization": f"Bearer {GATEWAY_KEY}", **headers},
                       json={"model": "simulator/echo", "messages": [{"role": "user", "content": content}]})


def test_a_megabyte_of_headers_gets_431_at_once(served):
    padding = [b"X-Pad-%d: %s" % (i, b"a" * 8000) for i in range(128)]  # 1 MB of ordinary-looking headers
    answer, took = send_and_read(served.port, head(headers=padding))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"code":"request_headers_too_large"' in answer
    assert took < 3.0, f"the refusal took {took:.2f} s"


def test_one_endless_header_is_cut_off_long_before_it_ends(served):
    answer, took = send_and_read(served.port, head(headers=[b"Cookie: " + b"c" * 1_000_000], end=False))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert took < 3.0, f"the refusal took {took:.2f} s"


def test_a_huge_url_gets_431(served):
    answer, _ = send_and_read(served.port, head(path="/v1/" + "a" * (MAX_HEAD_BYTES + 1)))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def settled_rss(served, quiet_s: float = 0.5, within_s: float = 15.0) -> int:
    """The server's RSS once the background warm-up after its first call (AWS clients, Bedrock's signer) is over:
    what grows after that is the heads' doing."""
    deadline = time.monotonic() + within_s
    last = served.rss_bytes()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = served.rss_bytes()
        if now - last < 256 * 1024:
            return now
        last = now
    return last


def test_memory_stays_flat_under_many_endless_heads(served):
    with httpx.Client() as client:  # warm the server up before measuring
        assert chat(client, served, "warm").status_code == 200
    before = settled_rss(served)
    connections = []
    try:
        for _ in range(32):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            connections.append(sock)
            try:
                sock.sendall(head(headers=[b"X-Endless: " + b"e" * 1_000_000], end=False))
            except (BrokenPipeError, ConnectionResetError):
                pass
        time.sleep(0.3)
        grown = served.rss_bytes() - before
    finally:
        for sock in connections:
            sock.close()
    assert grown < 10 * 1024 * 1024, f"32 MB of unfinished headers grew the server by {grown / 1e6:.1f} MB"


def test_ordinary_requests_still_work_large_bodies_and_keep_alive_included(served):
    with httpx.Client() as client:
        big_cookie = chat(client, served, "hi", cookie="session=" + "s" * 16_000)
        assert big_cookie.status_code == 200, big_cookie.text
        for _ in range(3):  # one connection: the cap resets per request, and body bytes never count
            answer = chat(client, served, "x" * 1_000_000)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"].startswith("(simulated)")
        assert client.get(served.url + "/health").status_code == 200
