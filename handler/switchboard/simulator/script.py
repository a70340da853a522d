"""What the simulated upstream will say, and at what pace: one `Script` per request.

Pace and faults come from the server's defaults, overridden per request by a `simulator` object in
the request body (the gateway forwards unknown fields untouched), for example with the OpenAI SDK:
`extra_body={"simulator": {"first_token_ms": 300, "tokens": 40, "gap_ms": 20}}`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

LABEL = "(simulated)"
_WORDS = (
    "This is a simulated reply from the switchboard simulator, streamed one token at a time so you "
    "can hear how quickly the gateway relays each word to your voice agent."
).split()


@dataclass(frozen=True)
class Script:
    first_token_ms: float = 0.0  # after the role chunk, before the first content token
    tokens: int = 12  # content tokens to stream
    gap_ms: float = 0.0  # between content tokens
    tool_call: str | bool | None = None  # call this tool (True: the first one offered)
    fail_status: int | None = None  # answer with this HTTP status and an error body
    retry_after: float | None = None  # with fail_status: a retry-after header, in seconds
    error_after: int | None = None  # send an in-stream error event after this many tokens
    cut_after: int | None = None  # drop the connection after this many tokens
    prompt_tokens: int = 0  # 0: estimated from the messages
    cached_tokens: int = 0
    # Bedrock only: the AWS error type of `fail_status` or of the `error_after` exception (its default
    # is modelStreamErrorException), the stop reason to end with, cache writes and reasoning to stream.
    error_type: str | None = None
    stop_reason: str | None = None
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def with_overrides(self, overrides: object) -> Script:
        """This script with the recognised, well-typed entries of `overrides` applied; the rest ignored."""
        if not isinstance(overrides, dict):
            return self
        changes: dict[str, Any] = {}
        for item in fields(self):
            value = overrides.get(item.name)
            if value is None or isinstance(value, dict | list):
                continue
            if item.name == "tool_call":
                changes[item.name] = value if isinstance(value, str | bool) else None
                continue
            if item.name in _TEXT_FIELDS:
                if isinstance(value, str) and value:
                    changes[item.name] = value[:100]
                continue
            number = _number(value)
            if number is not None and number >= 0:
                changes[item.name] = number if item.name.endswith("_ms") or item.name == "retry_after" else int(number)
        return replace(self, **changes)

    def words(self) -> list[str]:
        """The content tokens, each with its leading space, starting with the simulated label."""
        out = [LABEL]
        while len(out) < self.tokens:
            out.append(" " + _WORDS[(len(out) - 1) % len(_WORDS)])
        return out[: max(self.tokens, 0)]

    def reasoning_words(self) -> list[str]:
        """Reasoning tokens to stream before the answer (`reasoning_tokens` of them)."""
        return [("Thinking" if i == 0 else " it over") for i in range(max(self.reasoning_tokens, 0))]


_TEXT_FIELDS = frozenset({"error_type", "stop_reason"})


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and number != float("inf") else None


def pick_tool(script: Script, tools: object) -> dict | None:
    """The tool the script calls, from those the request offered (None: answer with text)."""
    if not script.tool_call or not isinstance(tools, list):
        return None
    offered = [t.get("function", t) for t in tools if isinstance(t, dict)]
    offered = [t for t in offered if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if not offered:
        return None
    if isinstance(script.tool_call, str):
        for tool in offered:
            if tool["name"] == script.tool_call:
                return tool
        return None
    return offered[0]


def tool_arguments(tool: dict) -> dict:
    """Arguments that satisfy the tool's JSON schema well enough for a demo: one value per property."""
    schema = tool.get("parameters") or tool.get("input_schema") or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    samples = {"string": "simulated", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    args = {}
    for name, prop in properties.items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if isinstance(prop, dict) and prop.get("enum"):
            args[name] = prop["enum"][0]
        else:
            args[name] = samples.get(kind if isinstance(kind, str) else "string", "simulated")
    return args


def estimate_prompt_tokens(body: dict) -> int:
    """About four characters a token, as the usual rule of thumb goes; at least 1."""
    messages = body.get("messages")
    size = len(str(messages)) + len(str(body.get("system", ""))) + len(str(body.get("tools", "")))
    return max(1, size // 4)
