"""AWS's binary event stream, decoded as it arrives by botocore's parser: ConverseStream's framing.

Imports botocore: loaded with the adapter, on first use.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from switchboard.providers.transport.errors import READ_ERRORS, read_error
from switchboard.providers.transport.response import UpstreamResponse
from switchboard.providers.upstream import broken_read
from switchboard.wire.chat import UpstreamError


async def read_messages(response: UpstreamResponse, provider: str
                        ) -> AsyncGenerator[list[EventStreamMessage], None]:
    """Event-stream messages as the socket delivers them, a list per read; a broken or truncated stream
    raises UpstreamError."""
    buffer = EventStreamBuffer()
    received = decoded = 0
    readany = response.readany
    try:
        while data := await readany():
            received += len(data)
            buffer.add_data(data)
            messages = list(buffer)
            if messages:
                decoded += sum(m.prelude.total_length for m in messages)
                yield messages
    except READ_ERRORS as exc:
        raise broken_read(provider, read_error(exc)) from None
    except ParserError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent a broken event stream ({exc}).",
                            kind="stream_error") from None
    if received != decoded:
        raise UpstreamError(502, f"Upstream provider '{provider}' ended the stream mid-event.", kind="stream_error")
