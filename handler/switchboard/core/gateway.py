"""One request's path: authenticate, parse, route, relay, record.

`Gateway` owns the long-lived pieces (settings, keys, the HTTP client to upstreams, the recorder),
so app.py stays a list of routes and the Mangum and uvicorn entries share one object.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from switchboard.config.settings import Settings
from switchboard.core import routing
from switchboard.core.attempts import settle
from switchboard.core.plan import CallPlan, plan, task_budgets
from switchboard.core.relay import Recorder, Relay, note_prompt_version
from switchboard.core.routing import is_internal_address, resolve, verify_resolved
from switchboard.formats.chat_completions import ChatRequest, chat_request, metadata_from_headers, parse_json
from switchboard.formats.framing import Framer, ResponsesFramer
from switchboard.formats.responses.translate import chat_body_from_responses
from switchboard.keys.auth import Identity, KeyStore
from switchboard.keys.secrets import Secrets
from switchboard.ledger.record import UNAUTHENTICATED_TASK, CallClock, CallRecord
from switchboard.ledger.schema import ALL_TASKS
from switchboard.ledger.store import CallStore
from switchboard.limits.budgets import VERDICT_WAIT_S, BudgetCheck, BudgetTracker, Scope, Verdict, reservation_usd
from switchboard.limits.ratelimit import Limits, RateLimiter
from switchboard.providers.transport import CheckedResolver, UpstreamClient
from switchboard.wire.asgi import Incoming, Receive, Send
from switchboard.wire.chat import Route, UpstreamError
from switchboard.wire.errors import GatewayError

ProviderKeys = Callable[[str], "str | None"]
Answer = Callable[[dict, Receive, Send], Awaitable[None]]  # an ASGI response: a Reply, or a stream


class Gateway:
    def __init__(self, settings: Settings, keys: KeyStore, provider_keys: ProviderKeys, recorder: Recorder,
                 client: UpstreamClient | None = None, store: CallStore | None = None,
                 secrets: Secrets | None = None, limiter: RateLimiter | None = None,
                 budgets: BudgetTracker | None = None) -> None:
        self.settings = settings
        self.limiter = limiter or RateLimiter()
        self.task_budgets = task_budgets(settings)  # read now: a bad budget stops the start, not a call
        self.budgets = budgets or BudgetTracker.from_settings(settings)  # its spend: the recorder's `spend=`
        self.resolve_addresses = resolve_addresses
        self.store = store
        self.secrets = secrets
        self.keys = keys
        self.provider_keys = provider_keys
        self.recorder = recorder
        self.client = client or self._upstream_client()
        self.relay = Relay(self.client, settings, recorder)

    def _upstream_client(self) -> UpstreamClient:
        """One pooled client for every upstream: keep-alive connections save a TLS handshake per call.
        Its resolver answers for caller-named hosts from the very resolution `verify_resolved` checked."""
        resolver = CheckedResolver(lambda host: self.resolve_addresses(host), is_internal_address)
        return UpstreamClient(self.settings.connect_timeout_s, self.settings.read_timeout_s,
                              trust_env=self.settings.trust_env, resolver=resolver)

    async def start(self) -> None:
        await self.client.start()

    async def aclose(self) -> None:
        await self.client.aclose()

    def models(self) -> list[tuple[str, str]]:
        """(model id, owner) for every provider usable without a per-request key."""
        from switchboard.simulator.app import MODELS

        listed = []
        for name, config in self.settings.providers.items():
            if name == "simulator":
                if config.base_url:
                    listed += [(f"simulator/{m}", "switchboard-simulator (simulated)") for m in MODELS]
            elif name != "local" and config.base_url and self._usable(name, config.spec.needs_key):
                listed += [(f"{name}/{m}", name) for m in routing.prices(self.settings).models(name)]
        return listed

    def _usable(self, provider: str, needs_key: bool) -> bool:
        if needs_key:
            return bool(self.provider_keys(provider))
        if provider == "bedrock":  # no key: usable when botocore's chain found credentials (warmed at start-up)
            from switchboard.providers import adapter

            return adapter("bedrock").CREDENTIALS.found
        return True

    async def identify(self, headers: Mapping[str, str], *, admin: bool = False) -> Identity:
        """Environment keys answer at once; only a stored key may wait for the first Secrets Manager read.
        `headers`: lower-case names (a dict), or any mapping that finds them so (Starlette's Headers)."""
        authorization = gateway_authorization(headers)
        identity = self.keys.static_identity(authorization, admin=admin)
        if identity is not None:
            return identity
        if self.secrets is not None:
            await self.secrets.ensure_fresh()
        return self.keys.authenticate(authorization, admin=admin)

    async def authenticate_admin(self, headers: Mapping[str, str]) -> Identity:
        return await self.identify(headers, admin=True)

    def require_store(self) -> CallStore:
        if self.store is None:
            raise GatewayError(503, "No call ledger is configured (SWITCHBOARD_TABLE); nothing to report.",
                               code="ledger_not_configured")
        return self.store

    async def call(self, request: Incoming, api: str) -> Answer:
        """One model call in either wire format. Every outcome, refusals included, leaves exactly one record."""
        clock = CallClock()
        record = CallRecord(api=api)
        try:
            return await self._call(request, record, clock)
        except UpstreamError as exc:
            record.status, record.outcome, record.error = exc.status, exc.kind, exc.message
            await self.recorder(record, clock)
            error = exc.to_gateway_error()
            error.headers["x-request-id"] = record.request_id
            raise error from None
        except GatewayError as exc:
            record.status, record.outcome, record.error = exc.status, exc.code or exc.type, exc.message
            await self.recorder(record, clock)
            exc.headers["x-request-id"] = record.request_id
            raise
        except Exception as exc:  # a bug: still one record, and a clean 500 body
            from switchboard.observability import call_fields, logger

            logger.exception("unexpected error in a model call", extra=call_fields(record))
            record.status, record.outcome, record.error = 500, "internal_error", type(exc).__name__
            await self.recorder(record, clock)
            raise GatewayError(500, "The gateway hit an unexpected error; it has been logged.",
                               code="internal_error", headers={"x-request-id": record.request_id}) from None

    async def _call(self, request: Incoming, record: CallRecord, clock: CallClock) -> Answer:
        headers = catalyst_headers(request.headers)
        record.task_id = UNAUTHENTICATED_TASK  # what the caller names is believed only once its key is
        identity = await self.identify(headers)
        record.key_name = identity.name
        record.task_id = "default"  # where a refused task name's record goes
        record.task_id = task_id(headers.get("x-inference-task-id"))
        record.metadata = metadata_from_headers(headers)
        if self.secrets is not None:
            await self.secrets.ensure_fresh(gateway_keys=False)  # provider keys: normally no wait at all
        _check_content_type(headers.get("content-type"))
        raw = await request.body(self.settings.max_body_bytes)
        body = parse_json(raw)
        echo: dict | None = None
        if record.api == "responses":  # translated once, at the door: everything after it speaks chat
            body, echo = chat_body_from_responses(body)
            for name, value in echo.get("metadata", {}).items():
                record.metadata.setdefault(name, value)
        chat = chat_request(body, headers, dict(record.metadata))
        record.environment, record.requested_model, record.stream = chat.environment, chat.model, chat.stream
        framer: Framer | None = ResponsesFramer(record, echo) if echo is not None else None
        if chat.extra_body:
            record.metadata.update({f"extra.{k}"[:64]: _short(v) for k, v in list(chat.extra_body.items())[:32]})
        if self.settings.capture_traces:
            record.trace = {"messages": _capped(chat.body.get("messages"), self.settings.trace_max_chars)}
        try:
            return await self._relay(record, clock, chat, headers, identity, framer, len(raw))
        except BaseException:
            note_prompt_version(record, chat)  # the refusal's record carries it too
            raise

    async def _relay(self, record: CallRecord, clock: CallClock, chat: ChatRequest, headers: dict[str, str],
                     identity: Identity, framer: Framer | None, body_bytes: int) -> Answer:
        """Plan the routes, admit the call (budgets, then rate limits), and hand it to the relay."""
        call_plan = plan(chat.model, chat.task_id, headers, self.settings, self.provider_keys)
        for route in call_plan.routes:
            if route.verify_host:
                await verify_resolved(route.verify_host, self.resolve_addresses)
                self.client.require_check(route.verify_host, route.port)
        primary = call_plan.routes[0]
        record.provider, record.model, record.priced_as = primary.provider, primary.model, primary.priced_as
        check = self._budget_check(record, identity, call_plan, chat, body_bytes)
        if check is not None:  # what is known already decides before anything is sent upstream
            call_plan = self._apply_verdict(check.known, call_plan, record, headers)
        limits = Limits(identity.rpm if identity.rpm is not None else self.settings.rate_limit_rpm,
                        identity.concurrent if identity.concurrent is not None else self.settings.rate_limit_concurrent)
        admission = self.limiter.admit(record.request_id, identity.name, limits)
        pending = check.pending if check is not None else None
        if chat.stream:
            budget = asyncio.ensure_future(self._reroute(pending, call_plan, record, headers)) if pending else None
            if budget is not None:
                budget.add_done_callback(_retrieve)  # a stream never started never takes its verdict
            return self.relay.stream(record, clock, chat, call_plan, admission, framer, budget)
        if pending is not None:  # not streamed: nobody waits on a first token, so the verdict comes first
            try:
                done, _ = await asyncio.wait((pending,), timeout=VERDICT_WAIT_S)
                verdict = pending.result() if done else self.budgets.check_failed(None)
                call_plan = self._apply_verdict(verdict, call_plan, record, headers)
            except BaseException:
                settle(admission)
                raise
        return await self.relay.complete(record, clock, chat, call_plan, admission, framer)

    # -- budgets ------------------------------------------------------------------------------------------

    def _budget_check(self, record: CallRecord, identity: Identity, call_plan: CallPlan, chat: ChatRequest,
                      body_bytes: int) -> BudgetCheck | None:
        """The call's task and key budgets, its worst case reserved on each; None (and no work at all) when it
        has neither. A budgeted call on a model nothing prices is refused: it would spend unseen."""
        scopes = []
        task_budget = self.task_budgets.get(record.task_id)
        if task_budget is not None:
            scopes.append(Scope("task", record.task_id, task_budget))
        if identity.budget is not None:
            scopes.append(Scope("key", identity.name, identity.budget))
        if not scopes:
            return None
        for route in call_plan.routes:
            if route.priced_as is None:
                raise unpriced(route, scopes[0].describe())
        prices = routing.prices(self.settings)
        output = chat.body.get("max_completion_tokens") or chat.body.get("max_tokens") \
            or self.settings.budget_reserve_output_tokens
        reserve = reservation_usd([prices.by_key(route.priced_as) for route in call_plan.routes], body_bytes, output)
        return self.budgets.admit(record.request_id, scopes, reserve)

    def _apply_verdict(self, verdict: Verdict, call_plan: CallPlan, record: CallRecord,
                       headers: dict[str, str]) -> CallPlan:
        """Under budget: the plan as it is. Over: a 429, or the plan moved to the budget's downgrade model."""
        if not verdict.over or (record.budget_downgraded and not verdict.refuses):
            return call_plan
        if verdict.refuses:
            raise verdict.error()
        route = self._downgrade_route(verdict, headers)
        record.budget_downgraded = True
        record.provider, record.model, record.priced_as = route.provider, route.model, route.priced_as
        return replace(call_plan, routes=[route])

    def _downgrade_route(self, verdict: Verdict, headers: dict[str, str]) -> Route:
        """The downgrade model, resolved as a fallback is: the gateway's own provider keys and URLs."""
        model = verdict.downgrade_model
        plain_headers = {k: v for k, v in headers.items() if not k.startswith("x-inference-provider")}
        try:
            route = resolve(model, plain_headers, self.settings, self.provider_keys)
        except GatewayError as exc:
            raise GatewayError(503, f"{verdict.describe()}, and its downgrade model '{model}' cannot be used: "
                               f"{exc.message}", code="budget_downgrade_unavailable") from None
        if route.priced_as is None:
            raise GatewayError(503, f"{verdict.describe()}, and its downgrade model '{model}' has no price "
                               "(SWITCHBOARD_PRICES).", code="budget_downgrade_unavailable")
        return route

    async def _reroute(self, pending: asyncio.Future, call_plan: CallPlan, record: CallRecord,
                       headers: dict[str, str]) -> list[Route] | None:
        """For a streamed call: the routes to move to once the shared verdict is in (None: carry on)."""
        verdict = await asyncio.shield(pending)  # a call that stops waiting must not cancel the reservation
        moved = self._apply_verdict(verdict, call_plan, record, headers)
        return moved.routes if moved is not call_plan else None


# Task names the ledger gives a meaning of its own: a caller's record under one would drop out of the reports.
RESERVED_TASKS = frozenset({UNAUTHENTICATED_TASK, ALL_TASKS})


def task_id(header: str | None) -> str:
    """The caller's `x-inference-task-id`, trimmed ("default" when absent); 400 for a reserved name."""
    task = (header or "default").strip()[:256] or "default"
    if task in RESERVED_TASKS:
        raise GatewayError(400, f"x-inference-task-id '{task}' is reserved by the gateway; name the task otherwise.",
                           param="x-inference-task-id", code="reserved_task_id")
    return task


def unpriced(route: Route, budget: str) -> GatewayError:
    return GatewayError(400, f"Model '{route.requested_model or route.model}' has no price, and {budget} has a "
                        "budget, which it would spend unseen: add the model to a prices file named by "
                        "SWITCHBOARD_PRICES, or set SWITCHBOARD_DEFAULT_PRICE.", param="model", code="model_unpriced")


# Inference Catalyst carries its project key in these headers (the first is current, the second legacy);
# the Authorization header then holds the caller's own provider key. switchboard reads them the same way.
CATALYST_KEY_HEADERS = ("x-inference-observability-api-key", "x-inference-project-api-key")


def gateway_authorization(headers) -> str | None:
    """The gateway key, as an Authorization value: a Catalyst key header if sent, else Authorization."""
    for name in CATALYST_KEY_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            return "Bearer " + value.removeprefix("Bearer ").strip()
    return headers.get("authorization")


def catalyst_headers(headers: dict[str, str]) -> dict[str, str]:
    """With a Catalyst key header, Authorization's bearer is the caller's provider key, as on Catalyst."""
    if not any(headers.get(name) for name in CATALYST_KEY_HEADERS) or "x-inference-provider-api-key" in headers:
        return headers
    from switchboard.keys.auth import bearer_token

    provider_key = bearer_token(headers.get("authorization"))
    return {**headers, "x-inference-provider-api-key": provider_key} if provider_key else headers


async def resolve_addresses(host: str) -> list[str]:
    """Every address `host` resolves to (cached for a minute: a voice call should not wait on DNS twice)."""
    cached = _resolved.get(host)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    infos = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    addresses = sorted({info[4][0] for info in infos})
    if len(_resolved) > 1000:
        _resolved.clear()
    _resolved[host] = (time.monotonic() + 60, addresses)
    return addresses


_resolved: dict[str, tuple[float, list[str]]] = {}


def _check_content_type(content_type: str | None) -> None:
    if content_type and "json" not in content_type.lower():
        raise GatewayError(415, f"Content-Type must be application/json, got '{content_type[:100]}'.",
                           code="unsupported_media_type")


def _capped(value: object, limit: int) -> str:
    from switchboard.core.relay import cap
    from switchboard.wire.json import dumps

    return cap(dumps(value).decode(), limit)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # taken, so asyncio does not report a refusal nobody was left to hear


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:256]
