"""The call plan: which routes to try in order, and the clocks that decide when to give up on one.

Defaults come from settings; the server's routing configuration (`SWITCHBOARD_ROUTING`, JSON or
`@path/to/file.json`) refines them per task and defines model aliases; request headers refine them
per call:

    {"aliases": {"voice-fast": {"model": "groq/llama-3.3-70b-versatile",
                                "fallbacks": ["openai/gpt-4.1-mini"]}},
     "tasks": {"support-line": {"fallbacks": ["anthropic/claude-haiku-4-5"],
                                "first_token_timeout_ms": 1500, "buffer_after_ms": 800}}}

Headers: `x-switchboard-fallbacks` (comma-separated models), `x-switchboard-first-token-timeout-ms`,
`x-switchboard-buffer-after-ms`.

A task may carry a spend budget (see budgets.py), validated when the configuration is first read:

    "tasks": {"support-line": {"budget": {"daily_usd": 5, "monthly_usd": 100, "soft_percent": 80,
                                          "on_exceeded": {"model": "groq/llama-3.1-8b-instant"}}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from switchboard.config.settings import Settings, SettingsError
from switchboard.core.routing import KeyLookup, prices, resolve, split_model
from switchboard.limits.budgets import Budget, parse_budget
from switchboard.wire.chat import Route
from switchboard.wire.errors import GatewayError

MAX_FALLBACKS = 4
MAX_TIMEOUT_MS = 600_000


@dataclass(frozen=True)
class CallPlan:
    routes: list[Route]
    first_token_timeout_s: float | None
    total_timeout_s: float
    buffer_after_s: float | None
    max_retries: int
    retry_max_wait_s: float


@dataclass(frozen=True)
class RoutingConfig:
    aliases: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)
    budgets: dict[str, Budget] = field(default_factory=dict)  # task id -> its budget


@lru_cache(maxsize=8)
def routing_config(raw: str | None) -> RoutingConfig:
    if not raw:
        return RoutingConfig()
    try:
        text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"SWITCHBOARD_ROUTING is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError("SWITCHBOARD_ROUTING must be a JSON object with 'aliases' and/or 'tasks'")
    aliases, tasks = data.get("aliases") or {}, data.get("tasks") or {}
    if not isinstance(aliases, dict) or not isinstance(tasks, dict):
        raise SettingsError("SWITCHBOARD_ROUTING 'aliases' and 'tasks' must be objects")
    for task_id, entry in tasks.items():
        if not isinstance(entry, dict):
            raise SettingsError(f"SWITCHBOARD_ROUTING: tasks.{task_id} must be an object")
    return RoutingConfig(aliases, tasks, {task_id: _task_budget(task_id, entry["budget"])
                                          for task_id, entry in tasks.items() if "budget" in entry})


def _task_budget(task_id: str, value: object) -> Budget:
    """The task's budget, or a SettingsError naming the field: a cap that silently does nothing is worse."""
    try:
        budget = parse_budget(value, f"tasks.{task_id}.budget")
    except ValueError as exc:
        raise SettingsError(f"SWITCHBOARD_ROUTING: {exc}") from None
    if budget.downgrade_model is not None:
        try:
            split_model(budget.downgrade_model)
        except GatewayError as exc:
            raise SettingsError(f"SWITCHBOARD_ROUTING: tasks.{task_id}.budget.on_exceeded.model: {exc.message}") \
                from None
    return budget


def task_budgets(settings: Settings) -> dict[str, Budget]:
    """Every task budget in SWITCHBOARD_ROUTING (raises SettingsError for a bad one, or for a downgrade model
    the price catalog cannot price: a budget's own fallback must not spend unseen)."""
    budgets = routing_config(settings.routing_config).budgets
    catalog = prices(settings)
    for task_id, budget in budgets.items():
        if budget.downgrade_model is not None and catalog.resolve(*split_model(budget.downgrade_model)) is None:
            raise SettingsError(f"SWITCHBOARD_ROUTING: tasks.{task_id}.budget.on_exceeded.model "
                                f"'{budget.downgrade_model}' has no price: add it to SWITCHBOARD_PRICES or set "
                                "SWITCHBOARD_DEFAULT_PRICE")
    return budgets


def plan(model: str, task_id: str, headers: dict[str, str], settings: Settings, provider_key: KeyLookup) -> CallPlan:
    config = routing_config(settings.routing_config)
    alias = config.aliases.get(model) or {}
    task = config.tasks.get(task_id) or {}
    primary_model = alias.get("model", model)
    fallbacks = _fallback_models(headers.get("x-switchboard-fallbacks"), alias, task)
    routes = [resolve(primary_model, headers, settings, provider_key)]
    # Caller-named provider URLs and keys belong to the primary route only; fallbacks use the gateway's.
    plain_headers = {k: v for k, v in headers.items() if not k.startswith("x-inference-provider")}
    for fallback in fallbacks:
        route = resolve(fallback, plain_headers, settings, provider_key)
        if route not in routes:
            routes.append(route)

    def knob(header: str, name: str, default: float | None) -> float | None:
        value = _header_ms(headers, header)
        if value is None:
            value = _config_ms(task, name, task_id) if name in task else _config_ms(alias, name, model)
        return default if value is None else (value / 1000 or None)

    return CallPlan(
        routes=routes,
        first_token_timeout_s=knob("x-switchboard-first-token-timeout-ms", "first_token_timeout_ms",
                                   settings.first_token_timeout_s),
        total_timeout_s=knob("x-switchboard-timeout-ms", "total_timeout_ms", settings.total_timeout_s)
        or settings.total_timeout_s,
        buffer_after_s=knob("x-switchboard-buffer-after-ms", "buffer_after_ms", settings.buffer_after_s),
        max_retries=settings.max_retries,
        retry_max_wait_s=settings.retry_max_wait_s,
    )


def _fallback_models(header: str | None, alias: dict, task: dict) -> list[str]:
    if header is not None:
        models = [m.strip() for m in header.split(",") if m.strip()]
        if len(models) > MAX_FALLBACKS:
            raise GatewayError(400, f"x-switchboard-fallbacks names more than {MAX_FALLBACKS} models.",
                               param="x-switchboard-fallbacks", code="too_many_fallbacks")
        return models
    configured = alias.get("fallbacks") or task.get("fallbacks") or []
    return [str(m) for m in configured][:MAX_FALLBACKS]


def _header_ms(headers: dict[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_TIMEOUT_MS:
        raise GatewayError(400, f"{name} must be a whole number of milliseconds from 0 to {MAX_TIMEOUT_MS}.",
                           param=name, code="invalid_header")
    return int(value)


def _config_ms(entry: dict, name: str, where: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TIMEOUT_MS:
        raise GatewayError(500, f"SWITCHBOARD_ROUTING: {name} for '{where}' must be milliseconds.",
                           code="bad_routing_config")
    return value
