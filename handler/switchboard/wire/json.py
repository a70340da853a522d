"""JSON as the gateway writes it: compact, as OpenAI frames its chunks."""

from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any) -> bytes:
    """Compact JSON, the way OpenAI frames its chunks. ASCII-only: a lone surrogate a client sent (valid
    JSON escape, invalid UTF-8) stays escaped instead of breaking the encoding."""
    return json.dumps(obj, separators=(",", ":")).encode()
