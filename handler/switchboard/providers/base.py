"""The contract every provider family implements (`Adapter`), and the stream loop they all share.

A family (`openai_compat`, `anthropic/`, `bedrock/`) turns one OpenAI Chat Completions request into its
upstream's wire format and the answer back into OpenAI chunks. How it does so is its own business; what the
gateway may rely on is this module: the `Adapter` methods, how their resources are released, and the one
loop (`stream_batches`) that turns an upstream's reads into the relay's batches for all of them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, NamedTuple, Protocol, TypeVar

from switchboard.providers.transport.client import UpstreamClient
from switchboard.providers.transport.response import UpstreamResponse
from switchboard.wire.chat import Batch, Route, UpstreamError, is_visible

Event = TypeVar("Event")
EventIn = TypeVar("EventIn", contravariant=True)


class UpstreamStats:
    """What an upstream says about one call besides its answer, filled in by the adapter as it learns it, for the
    call's record (never for the client). A caller that wants the figures passes one to `stream` or `complete`."""

    __slots__ = ("latency_ms",)

    def __init__(self) -> None:
        # The upstream's own latency figure (Bedrock's metrics.latencyMs), None when it gives none.
        self.latency_ms: int | float | None = None


class Adapter(Protocol):
    """One provider family's way of making a call. `body` is the client's request, already checked by
    `switchboard.formats.chat_completions`; `route` says where it goes (base URL, model, key).

    Releasing resources: the iterator `stream` returns owns the upstream response from its first step on,
    and gives it back (the connection pooled when the body was read to its end, else closed) when it is
    exhausted, when it raises, or when it is closed with `aclose()`. A caller that stops reading early must
    therefore `aclose()` it, in a `finally`:

        batches = adapter.stream(client, route, body)
        try:
            async for batch in batches:
                ...
        finally:
            await batches.aclose()

    `complete` holds nothing once it returns or raises. No method keeps anything of the call afterwards but
    what it wrote into `stats`.
    """

    def stream(self, client: UpstreamClient, route: Route, body: dict,
               stats: UpstreamStats | None = None) -> AsyncGenerator[Batch, None]:
        """The answer as batches of OpenAI chunks, one non-empty batch per upstream read, each chunk a
        `(json_bytes, parsed_dict)` pair. Raises UpstreamError before the first batch when the upstream
        refuses or cannot be reached, and mid-stream when the stream breaks (GatewayError, before any
        traffic, for a request this family can never send)."""
        ...

    async def complete(self, client: UpstreamClient, route: Route, body: dict,
                       stats: UpstreamStats | None = None) -> dict:
        """The answer as one `chat.completion` dict; the same errors as `stream`."""
        ...

    def usable(self, route: Route | None = None) -> str | None:
        """Why a call to `route` (or, without one, any call of this family) cannot be made from this process,
        or None when nothing is known against it. Cheap and never blocking: it says what is known already
        (Bedrock: whether the AWS credential chain has been resolved), it never goes looking."""
        ...

    def warm(self) -> None:
        """Load now what the first call would otherwise wait for (Bedrock: its credentials). Blocking: call it
        off the event loop, after start-up. Failing quietly is fine: the call itself reports properly."""
        ...


class StreamTransform(Protocol[EventIn]):
    """One call's upstream events -> OpenAI chunks, an event at a time, no I/O (what `stream_batches` drives)."""

    @property
    def whole(self) -> bool:
        """The answer is complete: a stream that ends now has lost nothing."""
        ...

    @property
    def over(self) -> bool:
        """Nothing more is to come: the rest of the body is only its framing."""
        ...

    def chunks(self, event: EventIn) -> Batch:
        """The chunks `event` produces (often none); UpstreamError for an error the upstream reports in-stream."""
        ...


class OpenedStream(NamedTuple, Generic[Event]):
    """An upstream stream as an adapter opened it: the 2xx response, its reads, and the call's transform."""

    response: UpstreamResponse
    reads: AsyncGenerator[list[Event], None]
    transform: StreamTransform[Event]


async def stream_batches(open_stream: Callable[[], Awaitable[OpenedStream[Event]]], provider: str, last_event: str
                         ) -> AsyncGenerator[Batch, None]:
    """The loop every adapter's `stream` is. `open_stream` sends the request (raising UpstreamError when the
    upstream refuses, before the first batch); then each of the upstream's reads, a list of events, is turned
    by the transform into one of the relay's batches. The adapter returns this generator itself, so no layer is
    added between the socket and the relay; per event it costs one call to `transform.chunks`.

      * One batch per read, never empty: a burst of twenty tokens costs the relay one write, not twenty.
      * The first visible chunk goes out before the rest of its read is translated.
      * A failure mid-read: what came before it in the read still reaches the client first, then it raises.
      * Once `transform.over`, the rest of the body (normally the chunked terminator) is read, so that the
        connection goes back to its pool: closing early drops it, and the next call would pay for a new one,
        a TLS handshake included.
      * A stream that closes before `transform.whole` is an UpstreamError naming `last_event`.

    The response and its reads are closed however the loop ends.
    """
    response, reads, transform = await open_stream()
    chunks = transform.chunks
    visible = False  # the first visible chunk has gone out
    try:
        async for events in reads:
            batch: Batch = []
            try:
                for index, event in enumerate(events):
                    produced = chunks(event)
                    if produced:
                        batch += produced
                        if not visible and any(is_visible(parsed) for _raw, parsed in produced):
                            visible = True
                            if index + 1 < len(events):
                                yield batch
                                batch = []
            except UpstreamError:
                if batch:  # what came before a failure in the same read still reaches the client first
                    yield batch
                raise
            if batch:
                yield batch
            if transform.over:
                await response.drain()
                return
    finally:
        await reads.aclose()  # now, not by the loop's finalizer hook (a wake-up per call)
        response.close()
    if not transform.whole:
        raise UpstreamError(502, f"Upstream provider '{provider}' ended the stream before {last_event}.",
                            kind="stream_error")
