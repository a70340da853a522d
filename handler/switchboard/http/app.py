"""The ASGI app: the model calls and /health answered directly, everything else by the admin app (FastAPI),
built on the first request that needs it.

The call routes are the hot path a voice agent waits on; a framework's routing, dependency solving and
request objects add hundreds of microseconds to every call and give it nothing it uses, and importing
FastAPI (its OpenAPI models, pydantic) at start-up would cost the cold start that the Lambda Web Adapter
waits for. The admin API, the dashboard and the error answers for unknown paths keep FastAPI's conveniences.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING

from switchboard.formats import FORMAT_BY_PATH
from switchboard.http.errors import unexpected_error_reply
from switchboard.wire.asgi import Incoming, Receive, Reply, Send, error_reply, json_reply
from switchboard.wire.errors import GatewayError, error_body

if TYPE_CHECKING:
    from switchboard.config.settings import Settings
    from switchboard.core.gateway import Gateway
    from switchboard.formats.base import Format

MODELS = frozenset({"/v1/models", "/models"})
HEALTH = json_reply({"status": "ok"})


class SwitchboardApp:
    """The ASGI entry. `state.gateway` is the running Gateway (tests and Mangum read it there)."""

    def __init__(self, settings: Settings | None = None, gateway: Gateway | None = None) -> None:
        self.settings = settings
        self.state = SimpleNamespace(gateway=gateway)
        self._api: Callable | None = None
        self.on_started: list[Callable[[Gateway], None]] = []  # run once the gateway has started

    @property
    def gateway(self) -> Gateway:
        gateway = self.state.gateway
        if gateway is None:  # Mangum without lifespan, or a test that skipped start-up
            from switchboard.config.settings import Settings
            from switchboard.core.runtime import build_gateway

            gateway = self.state.gateway = build_gateway(self.settings or Settings.from_env())
        return gateway

    @property
    def api(self) -> Callable:
        """The admin app (FastAPI), built now if it is not yet."""
        if self._api is None:
            from switchboard.http.admin import build_api

            self._api = build_api(lambda: self.gateway)
        return self._api

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            wire_format = FORMAT_BY_PATH.get(path)
            if wire_format is not None:
                if scope["method"] == "POST":
                    await self._call(scope, receive, send, wire_format)
                else:
                    await _not_allowed(scope, receive, send)
                return
            if path == "/health" and scope["method"] == "GET":
                await HEALTH(scope, receive, send)
                return
            if path in MODELS and scope["method"] == "GET":
                await self._models(scope, receive, send)
                return
        elif kind == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.api(scope, receive, send)

    async def _call(self, scope: dict, receive: Receive, send: Send, wire_format: Format) -> None:
        try:
            response = await self.gateway.call(Incoming(scope, receive), wire_format)
        except GatewayError as exc:
            response = error_reply(exc)
        except Exception as exc:
            response = unexpected_error_reply(exc)
        await response(scope, receive, send)

    async def _models(self, scope: dict, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        try:
            await gateway.identify(Incoming(scope, receive).headers)
            if gateway.secrets is not None:
                await gateway.secrets.ensure_fresh(gateway_keys=False)  # provider keys decide what is listed
            listed = [{"id": model, "object": "model", "created": 0, "owned_by": owner}
                      for model, owner in gateway.models()]
            response = json_reply({"object": "list", "data": listed})
        except GatewayError as exc:
            response = error_reply(exc)
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    gateway = self.gateway
                    await gateway.start()  # the upstream session exists before /health answers
                    for started in self.on_started:
                        started(gateway)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.state.gateway is not None:
                    await self.state.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> SwitchboardApp:
    """Build the app. Without a gateway, one is built from the environment at start-up."""
    from switchboard.core.runtime import warm_after_first_call

    app = SwitchboardApp(settings, gateway)
    app.on_started.append(warm_after_first_call)
    return app


async def _not_allowed(scope: dict, receive: Receive, send: Send) -> None:
    path = scope["path"]
    await Reply(_error(f"No route for {scope['method']} {path}.", 405), 405, {"allow": "POST"})(scope, receive, send)


def _error(message: str, status: int) -> bytes:
    from switchboard.wire.errors import error_type_for
    from switchboard.wire.json import dumps

    return dumps(error_body(message, error_type_for(status), code=str(status)))
