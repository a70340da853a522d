"""The fault plan: the kinds of request a wave mixes, and a seeded wave of them.

A kind says what it asks of the simulator (a failing model, a cut, a slow first token) and what a correct
ending looks like, so the client can judge each response without knowing why it was sent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix: what it asks of the simulator and what a correct ending looks like."""

    name: str
    share: float
    model: str = "openai/ok"
    headers: tuple[tuple[str, str], ...] = ()
    simulator: tuple[tuple[str, int], ...] = ()
    upstream_fault: bool = False
    expect: str = "done"  # done | json_error | error_event | disconnect
    api: str = "chat"  # chat | responses: which door the request takes


KINDS = (
    Kind("normal", 0.60),
    Kind("upstream_5xx_fallback", 0.10, "openai/fail-503", (("x-switchboard-fallbacks", "openai/ok"),),
         upstream_fault=True),
    Kind("upstream_5xx", 0.05, "openai/fail-503", upstream_fault=True, expect="json_error"),
    Kind("cut_mid_stream", 0.10, simulator=(("cut_after", 5),), upstream_fault=True, expect="error_event"),
    Kind("slow_first_token", 0.10, "openai/slow-1500", (("x-switchboard-first-token-timeout-ms", "400"),
                                                        ("x-switchboard-fallbacks", "openai/ok")),
         upstream_fault=True),
    Kind("client_disconnect", 0.05, expect="disconnect"),
    Kind("responses_normal", 0.05, api="responses"),
    Kind("responses_5xx_fallback", 0.02, "openai/fail-503", (("x-switchboard-fallbacks", "openai/ok"),),
         upstream_fault=True, api="responses"),
    Kind("responses_cut_mid_stream", 0.02, simulator=(("cut_after", 5),), upstream_fault=True,
         expect="error_event", api="responses"),
    Kind("responses_client_disconnect", 0.01, expect="disconnect", api="responses"),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}


def plan_wave(streams: int, rng: random.Random) -> list[Kind]:
    """Each kind's share of the wave (at least one of each fault), the rest normal, in a seeded order."""
    planned: list[Kind] = []
    for kind in KINDS[1:]:
        planned += [kind] * max(1, round(kind.share * streams))
    planned += [KINDS[0]] * max(0, streams - len(planned))
    planned = planned[:streams]
    rng.shuffle(planned)
    return planned
