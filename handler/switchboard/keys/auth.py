"""Gateway and admin keys.

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every known key, so neither
the comparison nor the loop length depends on how much of a guess was right. Keys stored in Secrets
Manager are kept only as those digests; environment keys are hashed once at start-up.

A key has scopes: `gateway` (chat and models) and `admin` (the calls and usage API). An admin key is
not a gateway key unless it was made as both, so a leaked operator key cannot spend on providers and
an agent's key cannot read every call record. Environment keys are checked first and alone when they
match, so a caller holding one never waits on Secrets Manager.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from switchboard.limits.budgets.model import Budget
from switchboard.wire.errors import GatewayError

KEY_PREFIX = "sb-"


@dataclass(frozen=True)
class Identity:
    name: str
    admin: bool = False  # may use the admin API
    rpm: int | None = None  # per-key rate limits; None: the server's defaults
    concurrent: int | None = None
    gateway: bool = True  # may call chat and models
    budget: Budget | None = None  # the key's spend budget, if it has one (see budgets.py)


@dataclass(frozen=True)
class StoredKey:
    name: str
    digest: str  # hex sha256 of the key
    admin: bool = False
    rpm: int | None = None
    concurrent: int | None = None
    gateway: bool = True
    budget: Budget | None = None

    def identity(self) -> Identity:
        return Identity(self.name, self.admin, self.rpm, self.concurrent, self.gateway, self.budget)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def env_keys(api_keys: Iterable[str], admin_keys: Iterable[str]) -> list[StoredKey]:
    """SWITCHBOARD_API_KEYS are gateway keys, SWITCHBOARD_ADMIN_KEYS admin keys; a key in both lists has both."""
    api_keys, admin_keys = list(api_keys), list(admin_keys)
    keys = [StoredKey(f"env-{i}", digest(k), admin=k in admin_keys) for i, k in enumerate(api_keys, 1)]
    keys += [StoredKey(f"env-admin-{i}", digest(k), admin=True, gateway=False)
             for i, k in enumerate(admin_keys, 1) if k not in api_keys]
    return keys


class KeyStore:
    """Authenticates `Authorization: Bearer` values against environment and stored keys."""

    def __init__(self, static: list[StoredKey], stored: Callable[[], list[StoredKey]] | None = None) -> None:
        self.static = static
        self.stored = stored or (lambda: [])

    def known_keys(self) -> list[StoredKey]:
        """Environment keys, then stored ones (from the secret's cache: 503 while it was never read)."""
        return [*self.static, *self.stored()]

    def static_identity(self, authorization: str | None, *, admin: bool = False) -> Identity | None:
        """The caller, if it holds an environment key; None if not (a stored key may still match). No I/O."""
        match = _match(_presented_digest(authorization), self.static)
        return None if match is None else _allowed(match, admin)

    def authenticate(self, authorization: str | None, *, admin: bool = False) -> Identity:
        """The caller among every key; 401 for no or an unknown key, 403 for a key without the scope."""
        wanted = _presented_digest(authorization)
        match = _match(wanted, self.static) or _match(wanted, self.stored())
        if match is None:
            raise GatewayError(401, "Incorrect API key provided.", code="invalid_api_key",
                               headers={"www-authenticate": "Bearer"})
        return _allowed(match, admin)


def _presented_digest(authorization: str | None) -> bytes:
    presented = bearer_token(authorization)
    if presented is None:
        raise GatewayError(401, "Missing API key: send 'Authorization: Bearer <gateway key>'.",
                           code="invalid_api_key", headers={"www-authenticate": "Bearer"})
    return digest(presented).encode()


def _match(wanted: bytes, keys: Iterable[StoredKey]) -> StoredKey | None:
    """Every key is compared, whichever matches, so the time taken says nothing about the guess."""
    match: StoredKey | None = None
    for key in keys:
        if hmac.compare_digest(wanted, key.digest.encode()) and match is None:
            match = key
    return match


def _allowed(key: StoredKey, admin: bool) -> Identity:
    if admin and not key.admin:
        raise GatewayError(403, "This endpoint needs an admin key.", code="admin_key_required")
    if not admin and not key.gateway:
        raise GatewayError(403, "This is an admin key, which only works for the admin API (/v1/calls, /v1/usage). "
                           "Use a gateway key here, or create a key with both scopes "
                           "(switchboard keys create NAME --admin --gateway).", code="gateway_key_required")
    return key.identity()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
