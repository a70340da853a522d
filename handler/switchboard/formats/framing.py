"""How a call's chunks look on the wire: Chat Completions or the Responses API.

The relay is the same for both (attempts, fallbacks, deadlines, buffer words, the record); only the
bytes differ. A framer turns each batch of the internal chat chunks into what its API's client reads,
and says how the stream opens, fails and ends.
"""

from __future__ import annotations

from typing import Protocol

from switchboard.formats.responses.translate import ResponsesStream, response_from_completion
from switchboard.ledger.record import CallRecord
from switchboard.wire.chat import Batch
from switchboard.wire.errors import error_body
from switchboard.wire.json import dumps
from switchboard.wire.sse import SSE_DONE, sse_data


class Observer(Protocol):
    def observe(self, chunk: dict) -> bool: ...


class Framer(Protocol):
    def opening(self) -> bytes: ...
    def frames(self, batch: Batch, observer: Observer) -> bytes: ...
    def buffer_words(self) -> bytes: ...
    def failed(self, message: str, code: str | None) -> bytes: ...
    def done(self) -> bytes: ...
    def completion(self, completion: dict) -> dict: ...


BUFFER_WORDS = "... "


class ChatFramer:
    """Chat Completions: the upstream's own chunk bytes, passed through; `data: [DONE]` at the end."""

    __slots__ = ("record", "include_usage")

    def __init__(self, record: CallRecord, include_usage: bool) -> None:
        self.record = record
        self.include_usage = include_usage  # the client asked for the usage chunk

    def opening(self) -> bytes:
        return b""

    def frames(self, batch: Batch, observer: Observer) -> bytes:
        frames = [b"data: " + payload + b"\n\n" for payload, parsed in batch
                  if not observer.observe(parsed) or self.include_usage]
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def buffer_words(self) -> bytes:
        """An ellipsis and a space, as ElevenLabs asks, so speech keeps flowing."""
        record = self.record
        return sse_data(dumps({"id": "chatcmpl-" + record.request_id, "object": "chat.completion.chunk",
                               "created": int(record.started_at), "model": record.requested_model or "",
                               "choices": [{"index": 0, "delta": {"role": "assistant", "content": BUFFER_WORDS},
                                            "logprobs": None, "finish_reason": None}]}))

    def failed(self, message: str, code: str | None) -> bytes:
        """An error event, then the stream's end: a client waiting for [DONE] is not left waiting."""
        return sse_data(dumps(error_body(message, "upstream_error", code=code))) + SSE_DONE

    def done(self) -> bytes:
        return SSE_DONE

    def completion(self, completion: dict) -> dict:
        return completion


class ResponsesFramer:
    """The Responses API: chat chunks become Responses events; `response.completed` ends the stream."""

    __slots__ = ("stream", "echo")

    def __init__(self, record: CallRecord, echo: dict) -> None:
        self.echo = echo
        self.stream = ResponsesStream(response_id(record), record.requested_model or "", int(record.started_at),
                                      echo)

    def opening(self) -> bytes:
        return self.stream.start()

    def frames(self, batch: Batch, observer: Observer) -> bytes:
        feed = self.stream.feed
        out = b""
        for _payload, parsed in batch:
            observer.observe(parsed)
            out += feed(parsed)
        return out

    def buffer_words(self) -> bytes:
        return self.stream.buffer_words(BUFFER_WORDS)

    def failed(self, message: str, code: str | None) -> bytes:
        return self.stream.fail(message, code)

    def done(self) -> bytes:
        return self.stream.complete()

    def completion(self, completion: dict) -> dict:
        stream = self.stream
        return response_from_completion(completion, stream.response_id, stream.created_at, stream.model, self.echo)


def response_id(record: CallRecord) -> str:
    """The Response's id carries the request id, so a client's logs lead straight to the call record."""
    return "resp_" + record.request_id.removeprefix("req_")
