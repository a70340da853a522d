"""One HTTP exchange at the ASGI level: the request's headers and body in, a reply out.

The call routes are the path a voice agent waits on, so they speak ASGI directly, without a framework's
request and response objects (and without importing one at start-up: FastAPI serves only the admin API,
built on its first request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from switchboard.wire.errors import GatewayError
from switchboard.wire.json import dumps

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class Incoming:
    """The request: its headers (names lower-case, as ASGI servers give them) and a way to read its body."""

    __slots__ = ("scope", "receive", "headers")

    def __init__(self, scope: dict, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}

    async def body(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (413 past it); 499 when the client leaves first."""
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise GatewayError(499, "The client went away before sending the whole body.",
                                   code="client_disconnected")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than the gateway's limit of {limit} bytes "
                        "(SWITCHBOARD_MAX_BODY_BYTES).", code="request_too_large")


class Reply:
    """A whole response: status, headers and body, sent as one head and one body message."""

    __slots__ = ("body", "status_code", "headers")

    def __init__(self, body: bytes, status_code: int = 200, headers: dict[str, str] | None = None,
                 media_type: str = "application/json") -> None:
        self.body = body
        self.status_code = status_code
        self.headers = {"content-type": media_type, **(headers or {})}

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        head = [(b"content-length", str(len(self.body)).encode())]
        head += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status_code, "headers": head})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def json_reply(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(dumps(value), status, headers)


def error_reply(error: GatewayError) -> Reply:
    return Reply(dumps(error.body()), error.status, error.headers)


async def no_receive() -> dict:
    return {"type": "http.disconnect"}
