"""Attempts: try the plan's routes in order until one produces its first token.

Before the first token nothing has reached the client, so a failure there (connect error, 5xx, 429,
the first-token deadline) can still be retried or handed to the next route. The first chunk carrying
anything the client will see (content, a tool call, a refusal, reasoning, or the finish) commits the
call to that route: from then on its stream is relayed as is and never switched, but the call's total
deadline still holds, however slowly the upstream trickles. Buffer words, if due while waiting, are
said through the relay's callback; they carry no upstream content, so a later fallback is still clean.
Once a route commits, `start` hands its stream to the relay, which reads the rest under one total deadline.

A streamed call whose budgets are still being read carries `budget`: a future that resolves to None
(carry on), to the routes of the budget's downgrade model, or to a GatewayError (refused). It is raced
with the first attempt: a verdict that arrives while the upstream is still silent moves the call at
once, as a fallback would, and nothing (not even buffer words) reaches the client before it is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

from switchboard.config.settings import Settings
from switchboard.core.admission import settle
from switchboard.core.plan import CallPlan
from switchboard.ledger.record import CallRecord
from switchboard.limits.budgets.tracker import VERDICT_WAIT_S, Verdict
from switchboard.providers.adapters import Adapters
from switchboard.providers.base import UpstreamStats
from switchboard.providers.transport.client import UpstreamClient
from switchboard.wire.chat import Chunk, Route, UpstreamError, is_visible

_TIMEOUT = object()
_VERDICT = object()  # the budget verdict came in while waiting on the upstream
BUDGET_DOWNGRADED = "budget_downgraded"  # an attempt's outcome when a budget moved the call off it


class _Rerouted(Exception):
    """A budget moved the call to its downgrade model before the first token: the routes to try instead."""

    def __init__(self, routes: list[Route]) -> None:
        super().__init__("budget downgrade")
        self.routes = routes


class _Puller:
    """`next(until)` on an async iterator that may give up waiting without cancelling the pending read."""

    __slots__ = ("iterator", "task")

    def __init__(self, iterator: AsyncIterator[list[Chunk]]) -> None:
        self.iterator = iterator
        self.task: asyncio.Future | None = None

    async def next(self, until: float | None, abandon_on_timeout: bool = False,
                   verdict: asyncio.Future | None = None):
        """The next item, or _TIMEOUT at `until`. With `abandon_on_timeout` the read is cancelled then
        (cheap: no task), otherwise it stays pending for the next call (buffer words keep waiting).
        With a pending `verdict`, _VERDICT when it finishes first (the read stays pending)."""
        if verdict is not None:
            return await self._next_or_verdict(until, verdict)
        if until is None and self.task is None:
            return await self.iterator.__anext__()  # no clock running: the plain, cheapest path
        if abandon_on_timeout and self.task is None and until is not None:
            try:
                async with asyncio.timeout(max(until - time.perf_counter(), 0.0)):
                    return await self.iterator.__anext__()
            except TimeoutError:
                return _TIMEOUT
        if self.task is None:
            self.task = asyncio.ensure_future(self.iterator.__anext__())
        timeout = None if until is None else max(until - time.perf_counter(), 0.0)
        done, _ = await asyncio.wait((self.task,), timeout=timeout)
        if not done:
            return _TIMEOUT
        task, self.task = self.task, None
        return task.result()

    async def _next_or_verdict(self, until: float | None, verdict: asyncio.Future):
        if self.task is None:
            self.task = asyncio.ensure_future(self.iterator.__anext__())
        timeout = None if until is None else max(until - time.perf_counter(), 0.0)
        done, _ = await asyncio.wait((self.task, verdict), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            task, self.task = self.task, None
            return task.result()
        return _VERDICT if verdict in done else _TIMEOUT

    def take_pending(self) -> asyncio.Future | None:
        """The read still under way (buffer words gave up waiting on it), for the caller to await first."""
        task, self.task = self.task, None
        return task

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
            self.task = None
        with contextlib.suppress(Exception):
            await self.iterator.aclose()  # type: ignore[attr-defined]


class Committed(NamedTuple):
    """The route that produced the first token: what it sent so far, and the rest of its stream."""

    held: list[Chunk]
    upstream: _Puller
    ended: bool  # its stream is already over (nothing more to read)
    stats: UpstreamStats  # what the upstream said besides its answer (for the record)


BufferWords = Callable[[], Awaitable[None]]


def retryable(error: UpstreamError) -> bool:
    return error.status == 429 or (error.status >= 500 and error.kind != "redirect_refused")


class Attempts:
    def __init__(self, client: UpstreamClient, adapters: Adapters, settings: Settings, plan: CallPlan, body: dict,
                 record: CallRecord, started: float, budget: asyncio.Future | None = None) -> None:
        self.client = client
        self.adapters = adapters
        self.budget = budget  # -> None | list[Route], or raises GatewayError; streamed calls only
        self.settings = settings
        self.plan = plan
        self.body = body
        self.record = record
        self.started = started
        self.total_deadline = started + plan.total_timeout_s
        self.buffer_due = started + plan.buffer_after_s if plan.buffer_after_s else None

    def _buffer_pending(self) -> float | None:
        return self.buffer_due if self.buffer_due is not None and not self.record.buffer_words else None

    async def start(self, buffer_words: BufferWords) -> Committed:
        """Try the routes until one produces its first token, and hand that stream over (the caller reads the
        rest and closes it). `buffer_words` is called, at most once, when they fall due before then. Raises the
        last error if every route fails."""
        try:
            last_error: UpstreamError | None = None
            routes, index = list(self.plan.routes), 0
            while index < len(routes):
                route, index = routes[index], index + 1
                retry = 0
                while True:
                    moved = self._decided_routes()
                    if moved is not None:
                        routes, index = moved, 0
                        break
                    attempt_started = time.perf_counter()
                    if attempt_started >= self.total_deadline:  # no time left: nothing more is sent upstream
                        raise last_error if last_error is not None and last_error.kind == "timeout" else \
                            UpstreamError(504, "The call's total deadline passed before a first token.", kind="timeout")
                    stats = UpstreamStats()
                    upstream = _Puller(self.adapters(route.adapter).stream(self.client, route, self.body, stats))
                    handed_over = False
                    try:
                        held: list[Chunk] = []
                        try:
                            ended = await self._until_first_token(upstream, held, attempt_started, buffer_words)
                        except UpstreamError as error:
                            last_error = self._failed(route, error, attempt_started)
                        except _Rerouted as rerouted:  # as a fallback would: the attempt ends, the cheaper model starts
                            self._log_attempt(route, BUDGET_DOWNGRADED, 0, attempt_started)
                            routes, index = rerouted.routes, 0
                            break
                        else:
                            self._committed(route, attempt_started)
                            handed_over = True
                            return Committed(held, upstream, ended, stats)
                    finally:
                        if not handed_over:
                            await upstream.aclose()
                    wait = self._retry_wait(last_error, retry)
                    if wait is None:
                        break  # on to the next route
                    try:
                        await self._sleep(wait, buffer_words)
                    except _Rerouted as rerouted:  # the verdict came in while waiting: the cheaper model next
                        routes, index = rerouted.routes, 0
                        break
                    retry += 1
            assert last_error is not None
            raise last_error
        finally:
            settle(self.budget)  # a verdict nobody waits for any more: cancelled, or its result taken

    async def _until_first_token(self, upstream: _Puller, held: list[Chunk], attempt_started: float,
                                 buffer_words: BufferWords) -> bool:
        """Read until the first token (True: the stream ended first, with nothing better to come from a retry)."""
        first_token_deadline = (attempt_started + self.plan.first_token_timeout_s
                                if self.plan.first_token_timeout_s else None)
        deadline = min(d for d in (first_token_deadline, self.total_deadline) if d is not None)
        while True:
            buffer_due = self._buffer_pending()
            verdict = self.budget if self.budget is not None and not self.budget.done() else None
            try:
                if buffer_due is None or buffer_due >= deadline:
                    item = await upstream.next(deadline, abandon_on_timeout=True, verdict=verdict)
                else:
                    item = await upstream.next(buffer_due, verdict=verdict)
            except StopAsyncIteration:
                if self.budget is not None:
                    await self._await_verdict()
                return True
            if item is _VERDICT:
                self._take_verdict()  # under budget: keep waiting on this attempt
                continue
            if item is _TIMEOUT:
                if buffer_due is not None and buffer_due < deadline and time.perf_counter() >= buffer_due:
                    if self.budget is not None:
                        await self._await_verdict()  # buffer words are a first byte too
                    self.record.buffer_words = True
                    await buffer_words()
                    continue
                if deadline == self.total_deadline:  # the call's own deadline, not this attempt's
                    raise UpstreamError(504, "The call's total deadline passed before a first token.", kind="timeout")
                raise UpstreamError(504, f"No first token within {round((deadline - attempt_started) * 1000)} ms.",
                                    kind="first_token_timeout")
            held.extend(item)
            if any(is_visible(parsed) for _payload, parsed in item):
                if self.budget is not None:
                    await self._await_verdict()  # the first token waits here only if the table is slower than it
                return False

    def _decided_routes(self) -> list[Route] | None:
        """Between attempts: a verdict already in moves the call before anything more is sent upstream."""
        if self.budget is None or not self.budget.done():
            return None
        try:
            self._take_verdict()
        except _Rerouted as moved:
            return moved.routes
        return None

    def _take_verdict(self) -> None:
        """Apply the budget verdict (done): carry on, raise _Rerouted, or raise its GatewayError (refused)."""
        future, self.budget = self.budget, None
        routes = future.result()  # type: ignore[union-attr]
        if routes:
            raise _Rerouted(routes)

    async def _await_verdict(self) -> None:
        """Before the first byte: the verdict, waited for at most VERDICT_WAIT_S; a later one lets the call be."""
        budget = self.budget
        if budget is None:
            return
        if not budget.done():
            await asyncio.wait((budget,), timeout=VERDICT_WAIT_S)
        if not budget.done():
            from switchboard.observability import call_fields, logger

            settle(budget)
            self.budget = None
            if self.settings.budget_on_error == "closed":
                logger.warning("budget verdict late; the call is refused", extra=call_fields(self.record))
                raise Verdict(unavailable="DynamoDB did not answer in time").error()
            logger.warning("budget verdict late; the call goes ahead", extra=call_fields(self.record))
            return
        self._take_verdict()

    async def complete(self) -> dict:
        """The non-streamed call: the same routes, retries and deadline, one chat.completion back."""
        last_error: UpstreamError | None = None
        for route in self.plan.routes:
            retry = 0
            while True:
                attempt_started = time.perf_counter()
                remaining = self.total_deadline - attempt_started
                if remaining <= 0:  # no time left: the route is not tried (nor recorded as tried)
                    raise last_error if last_error is not None and last_error.kind == "timeout" else \
                        UpstreamError(504, "The call's total deadline passed.", kind="timeout")
                try:
                    stats = UpstreamStats()
                    call = self.adapters(route.adapter).complete(self.client, route, self.body, stats)
                    completion = await asyncio.wait_for(call, remaining)
                except TimeoutError:
                    timed_out = UpstreamError(504, f"Upstream provider '{route.provider}' timed out.", kind="timeout")
                    last_error = self._failed(route, timed_out, attempt_started)
                except UpstreamError as error:
                    last_error = self._failed(route, error, attempt_started)
                else:
                    self._committed(route, attempt_started)
                    self.record.upstream_latency_ms = stats.latency_ms
                    return completion
                wait = self._retry_wait(last_error, retry)
                if wait is None:
                    break
                await asyncio.sleep(wait)
                retry += 1
        assert last_error is not None
        raise last_error

    def _retry_wait(self, error: UpstreamError, retry: int) -> float | None:
        """Seconds to wait before trying the same route again, or None to move on to the next route."""
        if retry >= self.plan.max_retries or error.kind in ("first_token_timeout", "timeout"):
            return None  # a slow route is not retried: the next one gets the remaining time
        wait = _retry_after(error.retry_after)
        if wait is None:
            wait = 0.05 * (2 ** retry)
        if wait > self.plan.retry_max_wait_s or time.perf_counter() + wait >= self.total_deadline:
            return None
        return wait

    async def _sleep(self, wait: float, buffer_words: BufferWords) -> None:
        """Sleep, still saying the buffer words if they fall due meanwhile."""
        resume = time.perf_counter() + wait
        while (now := time.perf_counter()) < resume:
            buffer_due = self._buffer_pending()
            if buffer_due is not None and buffer_due <= now:
                if self.budget is not None:
                    await self._await_verdict()  # buffer words are a first byte too (may raise _Rerouted)
                self.record.buffer_words = True
                await buffer_words()
                continue
            await asyncio.sleep((min(resume, buffer_due) if buffer_due else resume) - now)

    def _failed(self, route: Route, error: UpstreamError, attempt_started: float) -> UpstreamError:
        """Note a failed attempt; a client error ends the call, anything else may be retried or passed on."""
        self._log_attempt(route, error.kind, error.status, attempt_started)
        if not retryable(error):
            raise error
        return error

    def _committed(self, route: Route, attempt_started: float) -> None:
        self._log_attempt(route, "ok", 200, attempt_started)
        self.record.provider, self.record.model, self.record.priced_as = route.provider, route.model, route.priced_as

    def _log_attempt(self, route: Route, outcome: str, status: int, attempt_started: float) -> None:
        self.record.attempts.append({
            "provider": route.provider, "model": route.model, "outcome": outcome, "status": status,
            "started_ms": round((attempt_started - self.started) * 1000, 2),
            "ms": round((time.perf_counter() - attempt_started) * 1000, 2)})


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: too far off to wait for on a call
