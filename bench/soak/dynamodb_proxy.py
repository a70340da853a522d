"""A loopback HTTP proxy in front of moto that fails or stalls a share of the DynamoDB requests.

The gateway's ledger is pointed at it (SWITCHBOARD_AWS_ENDPOINT_URL), so its writes meet an HTTP 500
with DynamoDB's error body, or a stall past the write budget, as they would when DynamoDB misbehaves.
It runs on threads of the harness process, apart from the event loop that drives the streams.
"""

from __future__ import annotations

import http.client
import http.server
import json
import random
import threading
import time
import uuid
import zlib
from collections import Counter
from urllib.parse import urlsplit

from bench.servers import HOST

DYNAMODB_ERROR_BODY = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}'
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}


class DynamoFaultProxy:
    """A loopback HTTP proxy in front of moto that fails or stalls a share of the DynamoDB requests.

    A fault is an HTTP 500 with DynamoDB's error body, or a stall of `delay_s` (past the ledger's write
    budget) before the request goes through. Secrets Manager and everything else pass untouched.
    """

    def __init__(self, target: str, fault_rate: float = 0.10, delay_share: float = 0.5, delay_s: float = 1.5,
                 seed: int = 0) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or HOST, parts.port or 80)
        self.fault_rate, self.delay_share, self.delay_s = fault_rate, delay_share, delay_s
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.put_fault: dict[str, str] = {}  # request id in a PutItem -> what the proxy did to it
        self.forward_ms: list[float] = []  # DynamoDB requests passed through: moto's time, seen from here
        self.inflight = 0
        self.server = http.server.ThreadingHTTPServer((HOST, 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="dynamodb-fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"

    def start(self) -> DynamoFaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def decide(self, amz_target: str) -> str:
        """pass | error | delay, counted; only DynamoDB requests are ever faulted."""
        with self.lock:
            if not amz_target.startswith("DynamoDB_"):
                self.counts["other"] += 1
                return "pass"
            self.counts["dynamodb"] += 1
            roll = self.rng.random()
            fault = "pass"
            if roll < self.fault_rate * (1 - self.delay_share):
                fault = "error"
            elif roll < self.fault_rate:
                fault = "delay"
            self.counts[f"dynamodb_{fault}"] += 1
            return fault

    def sticky(self, body: bytes) -> bool:
        """Every write of about one record in fifty fails on every attempt, so some must reach the log."""
        try:
            request_id = json.loads(body)["Item"]["request_id"]["S"]
        except (ValueError, KeyError, TypeError):
            return False
        if zlib.crc32(request_id.encode()) % 50:
            return False
        with self.lock:
            self.counts["dynamodb_error_sticky"] += 1
        return True

    def note_put(self, body: bytes, fault: str) -> None:
        """Which call record a PutItem carried, so a duplicate can be traced to the fault that caused it."""
        try:
            request_id = json.loads(body)["Item"]["request_id"]["S"]
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            previous = self.put_fault.get(request_id)
            self.put_fault[request_id] = fault if previous is None else f"{previous},{fault}"  # botocore retries

    def wait_quiet(self, quiet_s: float, timeout: float) -> bool:
        """Until no request has been in flight or arrived for `quiet_s` (late writes have all landed)."""
        deadline = time.monotonic() + timeout
        last_total, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = sum(self.counts.values())
            if total != last_total or self.inflight:
                last_total, quiet_since = total, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return True
            time.sleep(0.1)
        return False

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects
            upstream: http.client.HTTPConnection | None = None

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                with proxy.lock:
                    proxy.inflight += 1
                try:
                    self._answer()
                finally:
                    with proxy.lock:
                        proxy.inflight -= 1

            do_GET = do_PUT = do_DELETE = do_POST  # noqa: N815

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                target = self.headers.get("x-amz-target", "")
                fault = proxy.decide(target)
                if target.endswith(".PutItem"):
                    if proxy.sticky(body):  # DynamoDB "down" for this record: every attempt fails
                        fault = "error"
                    proxy.note_put(body, fault)
                if fault == "error":
                    self._reply(500, [("Content-Type", "application/x-amz-json-1.0"),
                                      ("x-amzn-RequestId", uuid.uuid4().hex)], DYNAMODB_ERROR_BODY)
                    return
                if fault == "delay":
                    time.sleep(proxy.delay_s)
                forwarded = time.perf_counter()
                status, headers, data = self._forward(body)
                if fault == "pass" and target.startswith("DynamoDB_"):
                    proxy.forward_ms.append((time.perf_counter() - forwarded) * 1000)
                self._reply(status, headers, data)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                for attempt in range(2):  # a kept-alive connection moto closed meanwhile: once more, fresh
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(*proxy.target, timeout=30)
                    try:
                        self.upstream.request(self.command, self.path, body, headers)
                        response = self.upstream.getresponse()
                        data = response.read()
                        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                        return response.status, kept, data
                    except (OSError, http.client.HTTPException):
                        self.upstream.close()
                        self.upstream = None
                        if attempt:
                            raise
                raise AssertionError("unreachable")

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def finish(self) -> None:
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

            def log_message(self, *args) -> None:  # quiet: the counts say what happened
                pass

        return Handler

