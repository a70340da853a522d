"""Anthropic's Messages API behind the `Adapter` contract: the request map (request.py) and the stream
transform (stream.py), with the HTTP between them."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from switchboard.providers.anthropic.config import AnthropicConfig
from switchboard.providers.anthropic.request import messages_request
from switchboard.providers.anthropic.stream import StreamTranslator, completion_from_message
from switchboard.providers.base import OpenedStream, UpstreamStats, stream_batches
from switchboard.providers.transport.client import UpstreamClient
from switchboard.providers.upstream import SseEvent, UpstreamRequest, read_events, read_json, send
from switchboard.wire.chat import Batch, Route, UpstreamError
from switchboard.wire.json import dumps

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class AnthropicAdapter:
    def __init__(self, config: AnthropicConfig) -> None:
        self.config = config

    def stream(self, client: UpstreamClient, route: Route, body: dict,
               stats: UpstreamStats | None = None) -> AsyncGenerator[Batch, None]:
        async def open_stream() -> OpenedStream[SseEvent]:
            request = self._request(route, body, stream=True)
            response = await send(client, request, route.provider)
            translator = StreamTranslator(route.model, provider=route.provider, secrets=request.secrets)
            return OpenedStream(response, read_events(response, route.provider), translator)

        return stream_batches(open_stream, route.provider, "message_stop")

    async def complete(self, client: UpstreamClient, route: Route, body: dict,
                       stats: UpstreamStats | None = None) -> dict:
        response = await send(client, self._request(route, body, stream=False), route.provider)
        message = await read_json(response, route.provider, MAX_MESSAGE_BYTES)
        if not isinstance(message, dict) or message.get("type") != "message":
            raise UpstreamError(502, f"Upstream provider '{route.provider}' answered with something that is not "
                                "a message.", kind="http_error")
        return completion_from_message(message)

    def usable(self, route: Route | None = None) -> str | None:
        # A key is all it needs, and the router checks that.
        return None

    def warm(self) -> None:
        pass  # nothing to load: the first call pays for nothing the warm-up could have

    def _request(self, route: Route, body: dict, stream: bool) -> UpstreamRequest:
        payload = messages_request(body, route.model, self.config, stream)
        headers = {"content-type": "application/json", "accept-encoding": "identity",
                   "anthropic-version": self.config.version}
        if route.api_key:
            headers["x-api-key"] = route.api_key
        if stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest(f"{route.base_url}/v1/messages", headers, dumps(payload), (route.api_key or "",))
