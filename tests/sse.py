"""Server-sent events as a client reads them, for tests that check what the events say.

httpx-sse parses an httpx response's body, whether it was read already (`httpx.post`) or is still
arriving (`httpx.stream`, then iterate as the events come). Tests that check the bytes themselves (how
events are framed, where `data: [DONE]` falls, what a hostile upstream's bytes became) read
`response.content` on purpose: a lenient parser would hide exactly what they look for.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from httpx_sse import EventSource, ServerSentEvent


def events(response: httpx.Response) -> Iterator[ServerSentEvent]:
    """Each event of a `text/event-stream` response, in order, as soon as it is complete."""
    return EventSource(response).iter_sse()


def objects(response: httpx.Response) -> list[dict]:
    """The JSON object of every event whose data is one, in order: chunks and error events, not `[DONE]`."""
    return [event.json() for event in events(response) if event.data.startswith("{")]
