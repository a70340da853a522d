"""The FastAPI app: routes only. The work happens in gateway.py and the modules it calls."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from switchboard.dashboard import install_dashboard
from switchboard.gateway import Gateway
from switchboard.protocol import GatewayError, dumps, error_body, error_type_for
from switchboard.settings import Settings

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
RESPONSES_PATHS = frozenset({"/v1/responses", "/responses"})


class SwitchboardApp:
    """The ASGI entry: model calls (chat completions, responses) go straight to the gateway, everything
    else through FastAPI.

    The call routes are the hot path a voice agent waits on; FastAPI's routing, dependency solving and
    middleware layers add a few hundred microseconds to every call and give it nothing it uses. It
    still gets FastAPI's error handling: the same handlers turn its exceptions into OpenAI bodies.
    """

    def __init__(self, api: FastAPI) -> None:
        self.api = api

    def __getattr__(self, name: str):
        return getattr(self.api, name)  # state, openapi(), routes, ...: the FastAPI app's

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and (
                scope["path"] in CHAT_PATHS or scope["path"] in RESPONSES_PATHS):
            scope["app"] = self.api
            request = Request(scope, receive)
            api = "chat" if scope["path"] in CHAT_PATHS else "responses"
            try:
                response = await _gateway(request).call(request, api)
            except GatewayError as exc:
                response = _gateway_error_response(exc)
            except Exception as exc:
                response = _unexpected_error_response(exc)
            await response(scope, receive, send)
            return
        await self.api(scope, receive, send)


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> SwitchboardApp:
    """Build the app. Without a gateway, one is built from the environment at start-up."""
    from switchboard.runtime import build_gateway, warm_in_background

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "gateway", None) is None:
            app.state.gateway = build_gateway(settings or Settings.from_env())
        await app.state.gateway.start()  # the upstream session exists before /health answers
        warm_in_background(app.state.gateway)
        yield
        await app.state.gateway.aclose()

    # The generated schema does not describe the real request bodies, so it is for operators only.
    app = FastAPI(title="switchboard", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.gateway = gateway

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> dict:
        await _gateway(request).authenticate_admin(request)
        return app.openapi()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions", include_in_schema=False)
    async def chat_completions(request: Request) -> Response:
        return await _gateway(request).chat_completions(request)

    @app.post("/v1/responses")
    @app.post("/responses", include_in_schema=False)
    async def responses(request: Request) -> Response:
        return await _gateway(request).responses(request)

    @app.get("/v1/models")
    @app.get("/models", include_in_schema=False)
    async def models(request: Request) -> dict:
        gateway = _gateway(request)
        await gateway.identify(request)
        if gateway.secrets is not None:
            await gateway.secrets.ensure_fresh(gateway_keys=False)  # provider keys decide what is listed
        return {"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": owner}
            for model, owner in gateway.models()
        ]}

    @app.get("/v1/calls")
    async def calls(request: Request, task_id: str | None = None, conversation_id: str | None = None,
                    since: str | None = None, until: str | None = None, limit: int = 50) -> dict:
        gateway = _gateway(request)
        await gateway.authenticate_admin(request)
        store = gateway.require_store()
        if not 1 <= limit <= 1000:
            raise GatewayError(400, "limit must be between 1 and 1000.", param="limit", code="invalid_parameter")
        try:
            found = await asyncio.to_thread(store.calls, task_id=task_id, conversation_id=conversation_id,
                                            since=_time(since, "since"), until=_time(until, "until"), limit=limit)
        except ValueError as exc:
            raise GatewayError(400, f"Calls are listed {exc}; give task_id or conversation_id for more.",
                               param="since", code="invalid_parameter") from None
        return {"object": "list", "data": [public_record(item) for item in found]}

    @app.get("/v1/usage")
    async def usage(request: Request, task_id: str | None = None, environment: str | None = None,
                    since: str | None = None, until: str | None = None, group_by: str | None = None) -> dict:
        from switchboard.ledger.usage import parse_group_by, usage_report

        gateway = _gateway(request)
        await gateway.authenticate_admin(request)
        store = gateway.require_store()
        try:
            groups = parse_group_by(group_by)
        except ValueError as exc:
            raise GatewayError(400, f"{exc}.", param="group_by", code="invalid_parameter") from None
        found = await asyncio.to_thread(usage_report, store, task_id=task_id, environment=environment,
                                        since=_time(since, "since"), until=_time(until, "until"), group_by=groups)
        return {"object": "usage", "task_id": task_id, "environment": environment, "since": since, "until": until,
                **found}

    @app.get("/v1/budgets")
    async def budgets(request: Request) -> dict:
        """Each budget with its spend, what remains and when its period ends (admin keys only)."""
        from switchboard.budgets import budgets_report

        gateway = _gateway(request)
        await gateway.authenticate_admin(request)
        if gateway.secrets is not None:
            await gateway.secrets.ensure_fresh(provider_keys=False)  # key budgets live on the stored keys
        return await asyncio.to_thread(budgets_report, gateway)

    install_dashboard(app)

    _install_error_handlers(app)
    return SwitchboardApp(app)


def _time(value: str | None, name: str) -> float | None:
    from switchboard.ledger.store import to_epoch

    try:
        epoch = to_epoch(value)
    except (ValueError, OverflowError):
        epoch = float("nan")
    if epoch is not None and not 0 <= epoch < 253402300800:  # NaN fails too; 253402300800 is the year 10000
        raise GatewayError(400, f"{name} must be an ISO-8601 time such as 2026-11-22T10:00:00Z.", param=name,
                           code="invalid_parameter")
    return epoch


def public_record(item: dict) -> dict:
    """A stored call as the admin API shows it: every record field, `null` where unknown, no table keys."""
    from switchboard.ledger.store import public_record as shown

    return shown(item)


def _gateway(request: Request) -> Gateway:
    gateway = request.app.state.gateway
    if gateway is None:  # Mangum without lifespan, or a test that skipped start-up
        from switchboard.runtime import build_gateway

        gateway = request.app.state.gateway = build_gateway(Settings.from_env())
    return gateway


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return _gateway_error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"No route for {request.method} {request.url.path}." if exc.status_code in (404, 405) \
            else str(exc.detail)
        return JSONResponse(error_body(message, error_type_for(exc.status_code), code=str(exc.status_code)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return JSONResponse(error_body(f"Invalid parameter {where}: {first.get('msg', 'invalid')}",
                                       "invalid_request_error", param=where or None, code="invalid_parameter"),
                            status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _unexpected_error_response(exc)


def _gateway_error_response(exc: GatewayError) -> Response:
    return Response(dumps(exc.body()), status_code=exc.status, headers=exc.headers, media_type="application/json")


def _unexpected_error_response(exc: Exception) -> Response:
    from switchboard.observability import logger

    logger.exception("unexpected error", extra={"error_type": type(exc).__name__})
    return Response(dumps(error_body("The gateway hit an unexpected error; it has been logged.", "server_error",
                                     code="internal_error")), status_code=500, media_type="application/json")


