"""SWITCHBOARD_ROUTING: model aliases and per-task settings, as one model validated at start-up.

The configuration is JSON, or `@path/to/file.json`:

    {"aliases": {"voice-fast": {"model": "groq/llama-3.3-70b-versatile",
                                "fallbacks": ["openai/gpt-4.1-mini"]}},
     "tasks": {"support-line": {"fallbacks": ["anthropic/claude-haiku-4-5"],
                                "first_token_timeout_ms": 1500, "buffer_after_ms": 800,
                                "budget": {"daily_usd": 5, "on_exceeded": "refuse"}}}}

A bad value stops the start with a message naming the field (`tasks.support-line.first_token_timeout_ms`);
a call never discovers it. pydantic is imported only when a configuration is set: a gateway without one
does not pay for it at cold start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchboard.config.settings import SettingsError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from switchboard.config.budget import BudgetConfig

MAX_FALLBACKS = 4
MAX_TIMEOUT_MS = 600_000


@dataclass(frozen=True)
class Knobs:
    """What an alias or a task sets for the calls it covers (None: not set here)."""

    model: str | None = None
    fallbacks: tuple[str, ...] = ()
    first_token_timeout_ms: int | None = None
    total_timeout_ms: int | None = None
    buffer_after_ms: int | None = None
    budget: BudgetConfig | None = None


NOTHING = Knobs()


@dataclass(frozen=True)
class RoutingConfig:
    aliases: dict[str, Knobs] = field(default_factory=dict)
    tasks: dict[str, Knobs] = field(default_factory=dict)


@lru_cache(maxsize=8)
def routing_config(raw: str | None) -> RoutingConfig:
    """The parsed configuration (SettingsError naming the field for a bad one)."""
    if not raw:
        return RoutingConfig()
    try:
        text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"SWITCHBOARD_ROUTING is not readable JSON: {exc}") from None
    from pydantic import ValidationError

    try:
        parsed: Any = _model().model_validate(data)  # the shapes are built at run time: mypy sees BaseModel
    except ValidationError as exc:
        raise SettingsError(f"SWITCHBOARD_ROUTING: {_first_problem(exc)}") from None
    return RoutingConfig({name: _knobs(entry) for name, entry in (parsed.aliases or {}).items()},
                         {name: _knobs(entry, f"tasks.{name}") for name, entry in (parsed.tasks or {}).items()})


def _knobs(entry: BaseModel, where: str = "") -> Knobs:
    values = dict(entry)
    values["fallbacks"] = tuple(values["fallbacks"])[:MAX_FALLBACKS]
    if values.get("budget") is not None:
        from switchboard.config.budget import budget_config

        try:
            values["budget"] = budget_config(values["budget"], f"{where}.budget")
        except ValueError as exc:
            raise SettingsError(f"SWITCHBOARD_ROUTING: {exc}") from None
    return Knobs(**values)


def _first_problem(exc: Any) -> str:
    """`tasks.t.first_token_timeout_ms: Input should be greater than or equal to 0` (and how many more)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "the configuration"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


@lru_cache(maxsize=1)
def _model() -> type[BaseModel]:
    """The pydantic shapes, built on first use (pydantic loads only when a configuration is set)."""
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field, StrictInt

    Milliseconds = Annotated[StrictInt, Field(ge=0, le=MAX_TIMEOUT_MS)]
    ModelName = Annotated[str, Field(min_length=1)]

    class Entry(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        fallbacks: list[ModelName] = []
        first_token_timeout_ms: Milliseconds | None = None
        total_timeout_ms: Milliseconds | None = None
        buffer_after_ms: Milliseconds | None = None

    class Alias(Entry):
        model: ModelName | None = None

    class Task(Entry):
        budget: object = None  # read by the budget's own model (config/budget.py), which names its fields

    class Routing(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        aliases: dict[str, Alias] | None = None
        tasks: dict[str, Task] | None = None

    return Routing
