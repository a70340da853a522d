"""How a call's chunks look on the wire, whichever client-facing API it came in on.

The relay is the same for every format (attempts, fallbacks, deadlines, buffer words, the record); only the
bytes differ. A framer turns each batch of the internal chat chunks into what its API's client reads,
and says how the stream opens, fails and ends. A `Format` ties one API together: the paths it serves,
how its request becomes a chat body, and which framer answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from switchboard.wire.chat import Batch

# What ElevenLabs asks a slow model to say, so speech keeps flowing.
BUFFER_WORDS = "... "


class FrameContext(Protocol):
    """What a framer reads of the call. The call record has these fields, so the relay passes the record;
    read-only here: a framer writes bytes, never the record."""

    @property
    def request_id(self) -> str: ...

    @property
    def started_at(self) -> float: ...  # epoch seconds

    @property
    def requested_model(self) -> str | None: ...


class Observer(Protocol):
    def observe(self, chunk: dict) -> bool:
        """Note what the chunk says for the ledger; True when it is the usage-only chunk."""


class Framer(Protocol):
    def opening(self) -> bytes:
        """What goes before the first frame (b"" when nothing does); asked once, before anything it precedes."""

    def frames(self, batch: Batch, observer: Observer) -> bytes:
        """One batch of chunks as the client reads them; every chunk goes past `observer` on the way."""

    def buffer_words(self) -> bytes:
        """`BUFFER_WORDS`, framed as content the client speaks."""

    def failed(self, message: str, code: str | None) -> bytes:
        """The failure after the first byte, and the stream's end."""

    def done(self) -> bytes:
        """The stream's end, after the last frame."""

    def completion(self, completion: dict) -> dict:
        """A non-streamed chat.completion, as this API answers it."""


class FramerFactory(Protocol):
    def __call__(self, context: FrameContext, echo: dict | None, include_usage: bool) -> Framer:
        """The framer for one call: `echo` is what `Format.parse` kept for the answer, `include_usage` whether the
        client asked for Chat Completions' usage chunk."""


# A client's request body -> (the chat body `chat_completions.chat_request` validates, what the answer echoes).
Parse = Callable[[dict], tuple[dict, dict | None]]


@dataclass(frozen=True)
class Format:
    """One client-facing API, from the door to the exit."""

    name: str  # the call record's `api`
    paths: frozenset[str]  # the POST paths that speak it
    parse: Parse
    framer: FramerFactory
