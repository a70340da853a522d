"""Gateway and admin keys.

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every known key, so neither
the comparison nor the loop length depends on how much of a guess was right. Keys stored in Secrets
Manager are kept only as those digests; environment keys are hashed once at start-up.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from switchboard.protocol import GatewayError

KEY_PREFIX = "sb-"


@dataclass(frozen=True)
class Identity:
    name: str
    admin: bool = False
    rpm: int | None = None  # per-key rate limits; None: the server's defaults
    concurrent: int | None = None


@dataclass(frozen=True)
class StoredKey:
    name: str
    digest: str  # hex sha256 of the key
    admin: bool = False
    rpm: int | None = None
    concurrent: int | None = None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def env_keys(api_keys: Iterable[str], admin_keys: Iterable[str]) -> list[StoredKey]:
    keys = [StoredKey(f"env-{i}", digest(k)) for i, k in enumerate(api_keys, 1)]
    keys += [StoredKey(f"env-admin-{i}", digest(k), admin=True) for i, k in enumerate(admin_keys, 1)]
    return keys


class KeyStore:
    """Authenticates `Authorization: Bearer` values against environment and stored keys."""

    def __init__(self, static: list[StoredKey], stored: Callable[[], list[StoredKey]] | None = None) -> None:
        self.static = static
        self.stored = stored or (lambda: [])

    def all_keys(self) -> list[StoredKey]:
        return self.static + self.stored()

    def authenticate(self, authorization: str | None, *, admin: bool = False) -> Identity:
        presented = bearer_token(authorization)
        if presented is None:
            raise GatewayError(401, "Missing API key: send 'Authorization: Bearer <gateway key>'.",
                               code="invalid_api_key", headers={"www-authenticate": "Bearer"})
        wanted = digest(presented).encode()
        match: StoredKey | None = None
        for key in self.all_keys():
            if hmac.compare_digest(wanted, key.digest.encode()) and match is None:
                match = key
        if match is None:
            raise GatewayError(401, "Incorrect API key provided.", code="invalid_api_key",
                               headers={"www-authenticate": "Bearer"})
        if admin and not match.admin:
            raise GatewayError(403, "This endpoint needs an admin key.", code="admin_key_required")
        return Identity(match.name, match.admin, match.rpm, match.concurrent)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
