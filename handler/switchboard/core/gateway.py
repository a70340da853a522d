"""One request's path: authenticate, parse, route, relay, record.

`Gateway` owns the long-lived pieces (settings, keys, the HTTP client to upstreams, the recorder),
so app.py stays a list of routes and the Mangum and uvicorn entries share one object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from switchboard.config.settings import Settings
from switchboard.core.admission import Admitter
from switchboard.core.egress import is_internal_address, resolve_addresses, verify_resolved
from switchboard.core.plan import plan, prices
from switchboard.core.relay import Recorder, Relay, note_prompt_version
from switchboard.formats.base import Format, Framer
from switchboard.formats.chat_completions import ChatRequest, chat_request, metadata_from_headers, parse_json
from switchboard.keys.auth import Identity, KeyStore
from switchboard.keys.catalyst import catalyst_headers, gateway_authorization
from switchboard.keys.secrets import Secrets
from switchboard.ledger.record import UNAUTHENTICATED_TASK, CallClock, CallRecord
from switchboard.ledger.schema import ALL_TASKS
from switchboard.ledger.store import CallStore
from switchboard.limits.budgets.tracker import BudgetTracker
from switchboard.limits.ratelimit import RateLimiter
from switchboard.providers.adapters import Adapters
from switchboard.providers.transport.client import UpstreamClient
from switchboard.providers.transport.resolver import CheckedResolver
from switchboard.wire.asgi import Incoming, Receive, Send
from switchboard.wire.chat import UpstreamError
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
        self.budgets = budgets or BudgetTracker.from_settings(settings)  # its spend: the recorder's `spend=`
        self.admitter = Admitter(settings, self.limiter, self.budgets, provider_keys)
        self.task_budgets = self.admitter.task_budgets
        self.resolve_addresses = resolve_addresses
        self.store = store
        self.secrets = secrets
        self.keys = keys
        self.provider_keys = provider_keys
        self.recorder = recorder
        self.client = client or self._upstream_client()
        self.adapters = Adapters(settings.family_env)  # a bad family setting stops the start here
        self.relay = Relay(self.client, self.adapters, settings, recorder)

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
        listed = []
        for name, config in self.settings.providers.items():
            if name == "simulator":
                if config.base_url:
                    simulated = "switchboard-simulator (simulated)"
                    listed += [(f"simulator/{m}", simulated) for m in config.spec.listed_models]
            elif name != "local" and config.base_url and self._usable(name, config.spec.needs_key):
                listed += [(f"{name}/{m}", name) for m in prices(self.settings).models(name)]
        return listed

    def _usable(self, provider: str, needs_key: bool) -> bool:
        if needs_key:
            return bool(self.provider_keys(provider))
        spec = self.settings.providers[provider].spec
        return self.adapters(spec.adapter).usable() is None  # Bedrock: when botocore's chain found credentials

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

    async def call(self, request: Incoming, wire_format: Format) -> Answer:
        """One model call in any wire format. Every outcome, refusals included, leaves exactly one record."""
        clock = CallClock()
        record = CallRecord(api=wire_format.name)
        try:
            return await self._call(request, record, clock, wire_format)
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

    async def _call(self, request: Incoming, record: CallRecord, clock: CallClock, wire_format: Format) -> Answer:
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
        # translated once, at the door: everything after it speaks chat
        body, echo = wire_format.parse(body)
        if echo is not None:
            for name, value in echo.get("metadata", {}).items():
                record.metadata.setdefault(name, value)
        chat = chat_request(body, headers, dict(record.metadata))
        record.environment, record.requested_model, record.stream = chat.environment, chat.model, chat.stream
        framer = wire_format.framer(record, echo, chat.include_usage)
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
                     identity: Identity, framer: Framer, body_bytes: int) -> Answer:
        """Plan the routes, admit the call (budgets, then rate limits), and hand it to the relay."""
        call_plan = plan(chat.model, chat.task_id, headers, self.settings, self.provider_keys)
        for route in call_plan.routes:
            if route.verify_host:
                await verify_resolved(route.verify_host, self.resolve_addresses)
                self.client.require_check(route.verify_host, route.port)
        primary = call_plan.routes[0]
        record.provider, record.model, record.priced_as = primary.provider, primary.model, primary.priced_as
        call_plan, admission = await self.admitter.admit(record, identity, call_plan, chat, headers, body_bytes)
        if chat.stream:
            return self.relay.stream(record, clock, chat, call_plan, framer, admission)
        return await self.relay.complete(record, clock, chat, call_plan, framer, admission)


# Task names the ledger gives a meaning of its own: a caller's record under one would drop out of the reports.
RESERVED_TASKS = frozenset({UNAUTHENTICATED_TASK, ALL_TASKS})


def task_id(header: str | None) -> str:
    """The caller's `x-inference-task-id`, trimmed ("default" when absent); 400 for a reserved name."""
    task = (header or "default").strip()[:256] or "default"
    if task in RESERVED_TASKS:
        raise GatewayError(400, f"x-inference-task-id '{task}' is reserved by the gateway; name the task otherwise.",
                           param="x-inference-task-id", code="reserved_task_id")
    return task


def _check_content_type(content_type: str | None) -> None:
    if content_type and "json" not in content_type.lower():
        raise GatewayError(415, f"Content-Type must be application/json, got '{content_type[:100]}'.",
                           code="unsupported_media_type")


def _capped(value: object, limit: int) -> str:
    from switchboard.core.relay import cap
    from switchboard.wire.json import dumps

    return cap(dumps(value).decode(), limit)


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:256]
