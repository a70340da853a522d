"""Inference Catalyst's headers: where a caller sends its gateway key and its own provider key.

Catalyst carries its project key in x-inference-observability-api-key (current) or x-inference-project-api-key
(legacy); the Authorization header then holds the caller's own provider key. switchboard reads them the same way."""

from __future__ import annotations

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
