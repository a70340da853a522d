"""The FastAPI app behind everything but the call routes: the admin API, the dashboard, /openapi.json and the
answers for unknown paths. It is built on the first request that needs it, so FastAPI (and pydantic) cost
nothing at start-up or on a model call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from switchboard.dashboard import install_dashboard
from switchboard.http.errors import unexpected_error_reply
from switchboard.wire.asgi import error_reply
from switchboard.wire.errors import GatewayError, error_body, error_type_for

if TYPE_CHECKING:
    from switchboard.core.gateway import Gateway


def build_api(gateway: Callable[[], Gateway]) -> FastAPI:
    """The admin app; `gateway()` is the running gateway (built from the environment if it is not yet)."""
    # The generated schema does not describe the real request bodies, so it is for operators only.
    app = FastAPI(title="switchboard", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/openapi.json", include_in_schema=False, response_model=None)
    async def openapi(request: Request) -> dict:
        await gateway().authenticate_admin(request.headers)
        return app.openapi()

    @app.get("/v1/calls", response_model=None)
    async def calls(request: Request) -> dict:
        task_id, conversation_id, since, until = _query(request, "task_id", "conversation_id", "since", "until")
        running = gateway()
        await running.authenticate_admin(request.headers)
        store = running.require_store()
        limit = _whole(request.query_params.get("limit", "50"), "limit")
        if not 1 <= limit <= 1000:
            raise GatewayError(400, "limit must be between 1 and 1000.", param="limit", code="invalid_parameter")
        try:
            found = await asyncio.to_thread(store.calls, task_id=task_id, conversation_id=conversation_id,
                                            since=_time(since, "since"), until=_time(until, "until"), limit=limit)
        except ValueError as exc:
            raise GatewayError(400, f"Calls are listed {exc}; give task_id or conversation_id for more.",
                               param="since", code="invalid_parameter") from None
        return {"object": "list", "data": [public_record(item) for item in found]}

    @app.get("/v1/usage", response_model=None)
    async def usage(request: Request) -> dict:
        from switchboard.ledger.usage import parse_group_by, usage_report

        task_id, environment, since, until, group_by = _query(request, "task_id", "environment", "since", "until",
                                                               "group_by")
        running = gateway()
        await running.authenticate_admin(request.headers)
        store = running.require_store()
        try:
            groups = parse_group_by(group_by)
        except ValueError as exc:
            raise GatewayError(400, f"{exc}.", param="group_by", code="invalid_parameter") from None
        found = await asyncio.to_thread(usage_report, store, task_id=task_id, environment=environment,
                                        since=_time(since, "since"), until=_time(until, "until"), group_by=groups)
        return {"object": "usage", "task_id": task_id, "environment": environment, "since": since, "until": until,
                **found}

    @app.get("/v1/budgets", response_model=None)
    async def budgets(request: Request) -> dict:
        """Each budget with its spend, what remains and when its period ends (admin keys only)."""
        from switchboard.limits.budgets.report import budgets_report

        running = gateway()
        await running.authenticate_admin(request.headers)
        if running.secrets is not None:
            await running.secrets.ensure_fresh(provider_keys=False)  # key budgets live on the stored keys
        return await asyncio.to_thread(budgets_report, running.budgets.counters, running.task_budgets,
                                       running.keys.known_keys())

    install_dashboard(app)
    _install_error_handlers(app)
    return app


def _query(request: Request, *names: str) -> list[str | None]:
    """Query parameters read by hand: a typed FastAPI parameter would load pydantic.v1 (25 ms) to check its type."""
    return [request.query_params.get(name) for name in names]


def _whole(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise GatewayError(400, f"Invalid parameter {name}: Input should be a valid integer", param=name,
                           code="invalid_parameter") from None


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


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> Response:
        reply = error_reply(exc)
        return Response(reply.body, status_code=reply.status_code, headers=exc.headers, media_type="application/json")

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
    async def unexpected(_: Request, exc: Exception) -> Response:
        reply = unexpected_error_reply(exc)
        return Response(reply.body, status_code=500, media_type="application/json")
