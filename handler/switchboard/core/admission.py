"""Admission: whether a call may go ahead, and on which routes. One object for budgets and rate limits.

What is known at once decides at once: a budget already over refuses (429) or moves the call to its
downgrade model, and a rate limit this process has counted refuses, before anything is sent upstream.
What needs DynamoDB (the shared budget reservation, the shared rate-limit counter) runs beside the
upstream request, off the first-token path:

  * `before_first_byte()`: the rate limit's shared verdict, awaited before the client's first byte
    (decided long before the first token, normally);
  * `reroute`: the budget's verdict for a streamed call, raced against the first token by the attempts:
    it resolves to None (carry on), to the downgrade model's routes, or raises the refusal;
  * `settle()`: a verdict nobody will wait for any more is cancelled, or its result taken, so none is lost.

The call's end (core/finalize) frees the rate-limit slot and counts the spend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING

from switchboard.config.routing import routing_config
from switchboard.config.settings import Settings, SettingsError
from switchboard.core.plan import CallPlan, KeyLookup, prices, resolve, split_model
from switchboard.formats.chat_completions import ChatRequest
from switchboard.keys.auth import Identity
from switchboard.ledger.record import CallRecord
from switchboard.limits.budgets.model import Budget, Scope
from switchboard.limits.budgets.tracker import VERDICT_WAIT_S, BudgetTracker, Verdict, reservation_usd
from switchboard.limits.ratelimit import Limits, RateLimiter
from switchboard.wire.chat import Route
from switchboard.wire.errors import GatewayError

if TYPE_CHECKING:
    from switchboard.config.budget import BudgetConfig


def settle(pending: object) -> None:
    """A check nobody will wait for any more: cancel it, or take its result so none is lost."""
    if isinstance(pending, asyncio.Future):
        if pending.done():
            if not pending.cancelled():
                pending.exception()
        else:
            pending.cancel()


class Admission:
    """One admitted call's verdicts still on their way (see the module docstring)."""

    __slots__ = ("rate_limit", "reroute")

    def __init__(self, rate_limit: Awaitable[None] | None = None, reroute: asyncio.Future | None = None) -> None:
        self.rate_limit = rate_limit
        self.reroute = reroute  # -> None | list[Route], or raises GatewayError; streamed calls only

    async def before_first_byte(self) -> None:
        if self.rate_limit is not None:
            rate_limit, self.rate_limit = self.rate_limit, None
            await rate_limit

    def settle(self) -> None:
        settle(self.rate_limit)
        self.rate_limit = None


NOTHING_PENDING = Admission()


class Admitter:
    """The long-lived half: the rate limiter, the budget tracker and the task budgets, read at start-up."""

    def __init__(self, settings: Settings, limiter: RateLimiter, budgets: BudgetTracker,
                 provider_keys: KeyLookup) -> None:
        self.settings = settings
        self.limiter = limiter
        self.budgets = budgets
        self.provider_keys = provider_keys
        self.task_budgets = task_budgets(settings)  # read now: a bad budget stops the start, not a call

    async def admit(self, record: CallRecord, identity: Identity, call_plan: CallPlan, chat: ChatRequest,
                    headers: dict[str, str], body_bytes: int) -> tuple[CallPlan, Admission]:
        """The plan to follow (a budget may have moved it) and what is still to be decided; raises a refusal."""
        check = self._budget_check(record, identity, call_plan, chat, body_bytes)
        if check is not None:  # what is known already decides before anything is sent upstream
            call_plan = self._apply_verdict(check.known, call_plan, record, headers)
        limits = Limits(identity.rpm if identity.rpm is not None else self.settings.rate_limit_rpm,
                        identity.concurrent if identity.concurrent is not None else self.settings.rate_limit_concurrent)
        rate_limit = self.limiter.admit(record.request_id, identity.name, limits)
        pending = check.pending if check is not None else None
        if pending is None:
            return call_plan, Admission(rate_limit)
        if chat.stream:
            reroute = asyncio.ensure_future(self._reroute(pending, call_plan, record, headers))
            reroute.add_done_callback(_retrieve)  # a stream never started never takes its verdict
            return call_plan, Admission(rate_limit, reroute)
        try:  # not streamed: nobody waits on a first token, so the verdict comes first
            done, _ = await asyncio.wait((pending,), timeout=VERDICT_WAIT_S)
            verdict = pending.result() if done else self.budgets.check_failed(None)
            return self._apply_verdict(verdict, call_plan, record, headers), Admission(rate_limit)
        except BaseException:
            settle(rate_limit)
            raise

    def _budget_check(self, record: CallRecord, identity: Identity, call_plan: CallPlan, chat: ChatRequest,
                      body_bytes: int):
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
        catalog = prices(self.settings)
        output = chat.body.get("max_completion_tokens") or chat.body.get("max_tokens") \
            or self.settings.budget_reserve_output_tokens
        route_prices = [catalog.by_key(route.priced_as) for route in call_plan.routes]
        reserve = reservation_usd([price for price in route_prices if price is not None], body_bytes, output)
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


def unpriced(route: Route, budget: str) -> GatewayError:
    return GatewayError(400, f"Model '{route.requested_model or route.model}' has no price, and {budget} has a "
                        "budget, which it would spend unseen: add the model to a prices file named by "
                        "SWITCHBOARD_PRICES, or set SWITCHBOARD_DEFAULT_PRICE.", param="model", code="model_unpriced")


def task_budgets(settings: Settings) -> dict[str, Budget]:
    """Every task budget in SWITCHBOARD_ROUTING (raises SettingsError for a bad one, or for a downgrade model
    the price catalog cannot price: a budget's own fallback must not spend unseen)."""
    catalog = prices(settings)
    budgets = {}
    for task_id, task in routing_config(settings.routing_config).tasks.items():
        if task.budget is None:
            continue
        budget = budgets[task_id] = task_budget(task_id, task.budget)
        if budget.downgrade_model is not None and catalog.resolve(*split_model(budget.downgrade_model)) is None:
            raise SettingsError(f"SWITCHBOARD_ROUTING: tasks.{task_id}.budget.on_exceeded.model "
                                f"'{budget.downgrade_model}' has no price: add it to SWITCHBOARD_PRICES or set "
                                "SWITCHBOARD_DEFAULT_PRICE")
    return budgets


def task_budget(task_id: str, config: BudgetConfig) -> Budget:
    """The task's budget, or a SettingsError naming the field: a cap that silently does nothing is worse."""
    budget = Budget.from_config(config)
    if budget.downgrade_model is not None:
        try:
            split_model(budget.downgrade_model)
        except GatewayError as exc:
            raise SettingsError(f"SWITCHBOARD_ROUTING: tasks.{task_id}.budget.on_exceeded.model: {exc.message}") \
                from None
    return budget


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # taken, so asyncio does not report a refusal nobody was left to hear
