"""A Responses API stream: the internal chat chunks in, Responses server-sent events out, as they arrive.

`ResponsesStream` is the state machine (items opened as their first delta comes, closed in output order
at the end, one sequence number per event); `ResponsesFramer` is how the relay drives it. No I/O, nothing
stored: the events follow the official openai SDK's models (openai.types.responses) field for field.
"""

from __future__ import annotations

import json

from switchboard.formats.base import BUFFER_WORDS, FrameContext, Observer
from switchboard.formats.responses.objects import (
    call_arguments,
    call_item,
    final_status,
    message_item,
    output_item_id,
    reasoning_item,
    reasoning_text,
    refusal_part,
    response_error_code,
    response_from_completion,
    response_object,
    responses_usage,
    text_part,
)
from switchboard.wire.chat import Batch
from switchboard.wire.json import dumps


def _frame(event_type: str, payload: bytes) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + payload + b"\n\n"


class _DeltaFramer:
    """Frames one kind of delta event for one item: everything but the delta text and the sequence number
    is serialised once, when the item opens, so a token costs one small string encode."""

    __slots__ = ("_head",)

    def __init__(self, event_type: str, /, **fields: object) -> None:
        head = dumps({"type": event_type, **fields})
        self._head = b"event: " + event_type.encode() + b"\ndata: " + head[:-1] + b',"delta":'

    def frame(self, delta: str, sequence_number: int) -> bytes:
        return self._head + dumps(delta) + b',"sequence_number":' + str(sequence_number).encode() + b"}\n\n"


class _Part:
    """One content part being streamed: a message's output_text or refusal, or a reasoning item's text."""

    __slots__ = ("kind", "content_index", "pieces", "framer")

    def __init__(self, kind: str, content_index: int, framer: _DeltaFramer) -> None:
        self.kind = kind
        self.content_index = content_index
        self.pieces: list[str] = []
        self.framer = framer

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def as_dict(self) -> dict:
        if self.kind == "refusal":
            return refusal_part(self.text)
        if self.kind == "reasoning_text":
            return {"type": "reasoning_text", "text": self.text}
        return text_part(self.text)


class _Item:
    """An output item: a message (output_text and refusal parts), a reasoning item (one reasoning_text
    part) or a function call (argument fragments)."""

    __slots__ = ("type", "id", "output_index", "parts", "call_id", "name", "arguments", "framer", "done")

    def __init__(self, type_: str, item_id: str, output_index: int) -> None:
        self.type = type_
        self.id = item_id
        self.output_index = output_index
        self.parts: dict[str, _Part] = {}
        self.call_id = ""
        self.name: str | None = None
        self.arguments: list[str] = []
        self.framer: _DeltaFramer | None = None  # function calls: the arguments delta framer
        self.done = False

    def as_dict(self, status: str) -> dict:
        if self.type == "function_call":
            return call_item(self.id, status, self.call_id, self.name or "", call_arguments("".join(self.arguments)))
        content = [part.as_dict() for part in self.parts.values()]
        if self.type == "reasoning":
            return reasoning_item(self.id, status, content)
        return message_item(self.id, status, content)


_PART_EVENTS = {  # part kind -> (delta event, done event, the done event's text field)
    "output_text": ("response.output_text.delta", "response.output_text.done", "text"),
    "refusal": ("response.refusal.delta", "response.refusal.done", "refusal"),
    "reasoning_text": ("response.reasoning_text.delta", "response.reasoning_text.done", "text"),
}


class ResponsesStream:
    """Chat chunks in, Responses server-sent events out, one call at a time and as they arrive.

    Every item stays open until `complete()`, which closes them in output order and sends the whole
    Response once; per delta only the new text is encoded. After `complete()` or `fail()` nothing more
    is sent.
    """

    def __init__(self, response_id: str, model: str, created_at: int, echo: dict) -> None:
        self.response_id = response_id
        self.model = model
        self.created_at = created_at
        self.echo = echo
        self.finish_reason: str | None = None
        self.usage: dict | None = None  # the last chat usage fed
        self._sequence = 0
        self._items: list[_Item] = []
        self._message: _Item | None = None
        self._reasoning: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool-call index -> its item
        self._finished = False

    # -- public surface --

    def start(self) -> bytes:
        """response.created and response.in_progress: an empty response, before the first token."""
        snapshot = dumps(self._response("in_progress", [], None))  # encoded once for both events
        return self._raw_event("response.created", b'"response":' + snapshot) + self._raw_event(
            "response.in_progress", b'"response":' + snapshot)

    def feed(self, chunk: dict) -> bytes:
        """The events one chat.completion.chunk produces (b"" when none)."""
        if self._finished:
            return b""
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return b""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict) or not delta:
            return b""
        content = delta.get("content")
        if content and isinstance(content, str) and (len(delta) == 1 or (len(delta) == 2 and "role" in delta)):
            return self._text_delta("output_text", content)  # the hot path: one token of speech
        return self._delta_frames(delta, content)

    def buffer_words(self, text: str = "... ") -> bytes:
        """Speech filler while the model is slow: an output_text delta like any other."""
        if self._finished:
            return b""
        return self._text_delta("output_text", text)

    def complete(self, usage: dict | None = None) -> bytes:
        """Close every open item in output order, then response.completed (or response.incomplete when the
        output was cut at max_output_tokens or by a content filter, as OpenAI does) with the whole Response."""
        if self._finished:
            return b""
        self._finished = True
        status, incomplete = final_status(self.finish_reason)
        frames = [self._close(item, status) for item in self._items if not item.done]
        final = self._response(status, [item.as_dict(status) for item in self._items],
                               responses_usage(usage if usage is not None else self.usage),
                               incomplete_details=incomplete)
        event = "response.completed" if status == "completed" else "response.incomplete"
        frames.append(self._event(event, response=final))
        return b"".join(frames)

    def fail(self, message: str, code: str | None = None) -> bytes:
        """response.failed: the stream ends here, with what was produced so far marked incomplete."""
        if self._finished:
            return b""
        self._finished = True
        error = {"code": response_error_code(code), "message": message}
        failed = self._response("failed", [item.as_dict("incomplete") for item in self._items],
                                responses_usage(self.usage), error=error)
        return self._event("response.failed", response=failed)

    @property
    def output_text(self) -> str:
        """The text spoken so far (buffer words included), for the call record."""
        return "".join(part.text for item in self._items if item.type == "message"
                       for part in item.parts.values() if part.kind == "output_text")

    @property
    def function_calls(self) -> list[str]:
        """The names of the functions called so far, in order, for the call record."""
        return [item.name for item in self._items if item.type == "function_call" and item.name]

    # -- deltas --

    def _delta_frames(self, delta: dict, content: object) -> bytes:
        frames = []
        reasoning = reasoning_text(delta)
        if reasoning:
            frames.append(self._reasoning_delta(reasoning))
        if content and isinstance(content, str):
            frames.append(self._text_delta("output_text", content))
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            frames.append(self._text_delta("refusal", refusal))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            frames.extend(self._call_delta(call) for call in tool_calls if isinstance(call, dict))
        return b"".join(frames)

    def _text_delta(self, kind: str, text: str) -> bytes:
        opening = b""
        if self._message is None:
            self._message, opening = self._open("message", "msg")
        part = self._message.parts.get(kind)
        if part is None:
            part, added = self._open_part(self._message, kind)
            opening += added
        part.pieces.append(text)
        return opening + part.framer.frame(text, self._next())

    def _reasoning_delta(self, text: str) -> bytes:
        opening = b""
        if self._reasoning is None:
            self._reasoning, opening = self._open("reasoning", "rs")
            part, added = self._open_part(self._reasoning, "reasoning_text")
            opening += added
        part = self._reasoning.parts["reasoning_text"]
        part.pieces.append(text)
        return opening + part.framer.frame(text, self._next())

    def _call_delta(self, call: dict) -> bytes:
        item = self._call_for(call)
        function = found if isinstance(found := call.get("function"), dict) else {}
        if item.name is None and isinstance(function.get("name"), str) and function["name"]:
            item.name = function["name"]
        fragment = function.get("arguments")
        if isinstance(fragment, dict):
            fragment = json.dumps(fragment, separators=(",", ":"))
        frames = b""
        if item.framer is None and item.name is not None:  # opened once its name is known: the SDK needs one
            frames = self._open_call(item)
        if isinstance(fragment, str) and fragment:
            item.arguments.append(fragment)
            if item.framer is not None:
                frames += item.framer.frame(fragment, self._next())
        return frames

    def _call_for(self, call: dict) -> _Item:
        index = call.get("index")
        call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else None
        if not isinstance(index, int) or isinstance(index, bool):
            index = self._index_without_one(call_id)
        item = self._calls.get(index)
        if item is None:
            output_index = len(self._items)
            item = _Item("function_call", output_item_id("fc", self.response_id, output_index), output_index)
            item.call_id = call_id or output_item_id("call", self.response_id, output_index)
            self._items.append(item)
            self._calls[index] = item
        return item

    def _index_without_one(self, call_id: str | None) -> int:
        """For hosts that omit `index`: a known id is that call, a new id a new call, no id the latest."""
        for index, item in self._calls.items():
            if call_id and item.call_id == call_id:
                return index
        latest = max(self._calls, default=-1)
        return latest + 1 if call_id or latest < 0 else latest

    # -- opening and closing items --

    def _open(self, type_: str, prefix: str) -> tuple[_Item, bytes]:
        output_index = len(self._items)
        item = _Item(type_, output_item_id(prefix, self.response_id, output_index), output_index)
        self._items.append(item)
        return item, self._event("response.output_item.added", output_index=output_index,
                                 item=item.as_dict("in_progress"))

    def _open_part(self, item: _Item, kind: str) -> tuple[_Part, bytes]:
        content_index = len(item.parts)
        fields: dict[str, object] = {"item_id": item.id, "output_index": item.output_index,
                                  "content_index": content_index}
        if kind == "output_text":
            fields["logprobs"] = []
        part = _Part(kind, content_index, _DeltaFramer(_PART_EVENTS[kind][0], **fields))
        item.parts[kind] = part
        return part, self._event("response.content_part.added", item_id=item.id, output_index=item.output_index,
                                 content_index=content_index, part=part.as_dict())

    def _open_call(self, item: _Item) -> bytes:
        item.framer = _DeltaFramer("response.function_call_arguments.delta", item_id=item.id,
                                   output_index=item.output_index)
        added = call_item(item.id, "in_progress", item.call_id, item.name or "", "")
        frames = self._event("response.output_item.added", output_index=item.output_index, item=added)
        buffered = "".join(item.arguments)  # fragments that came before the name
        if buffered:
            frames += item.framer.frame(buffered, self._next())
        return frames

    def _close(self, item: _Item, status: str) -> bytes:
        item.done = True
        frames = []
        if item.type == "function_call":
            if item.framer is None:  # never named: still a call the client must see
                frames.append(self._open_call(item))
            frames.append(self._event("response.function_call_arguments.done", item_id=item.id,
                                      output_index=item.output_index, name=item.name or "",
                                      arguments=call_arguments("".join(item.arguments))))
        for part in item.parts.values():
            _, done_event, field = _PART_EVENTS[part.kind]
            fields: dict[str, object] = {field: part.text}
            if part.kind == "output_text":
                fields["logprobs"] = []
            frames.append(self._event(done_event, item_id=item.id, output_index=item.output_index,
                                      content_index=part.content_index, **fields))
            frames.append(self._event("response.content_part.done", item_id=item.id, output_index=item.output_index,
                                      content_index=part.content_index, part=part.as_dict()))
        frames.append(self._event("response.output_item.done", output_index=item.output_index,
                                  item=item.as_dict(status)))
        return b"".join(frames)

    # -- framing --

    def _next(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _raw_event(self, event_type: str, encoded_fields: bytes) -> bytes:
        """An event whose fields are already JSON (`"name":value` pairs): no second encoding of big objects."""
        head = b'{"type":"' + event_type.encode() + b'",'
        tail = b',"sequence_number":' + str(self._next()).encode() + b"}"
        return _frame(event_type, head + encoded_fields + tail)

    def _event(self, event_type: str, /, **fields: object) -> bytes:
        payload = {"type": event_type, **fields, "sequence_number": self._next()}
        return _frame(event_type, dumps(payload))

    def _response(self, status: str, output: list[dict], usage: dict | None, *, error: dict | None = None,
                  incomplete_details: dict | None = None) -> dict:
        return response_object(self.response_id, self.created_at, self.model, self.echo, status=status,
                                output=output, usage=usage, error=error, incomplete_details=incomplete_details)


class ResponsesFramer:
    """The Responses API: chat chunks become Responses events; `response.completed` ends the stream."""

    __slots__ = ("stream", "echo")

    def __init__(self, context: FrameContext, echo: dict) -> None:
        self.echo = echo
        self.stream = ResponsesStream(response_id(context.request_id), context.requested_model or "",
                                      int(context.started_at), echo)

    @classmethod
    def for_call(cls, context: FrameContext, echo: dict | None, include_usage: bool) -> ResponsesFramer:
        """The format's framer factory: the usage always goes into `response.completed`, asked for or not."""
        return cls(context, echo if echo is not None else {})

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


def response_id(request_id: str) -> str:
    """The Response's id carries the request id, so a client's logs lead straight to the call record."""
    return "resp_" + request_id.removeprefix("req_")
