"""boto3 clients, created once per process and only when first needed.

Importing boto3 costs about 200 ms, so nothing on the path to `/health` imports it; `warm()` lets a
server build the clients on a background thread right after start-up instead of on the first call.
Against the embedded emulation (`SWITCHBOARD_AWS_ENDPOINT_URL`) the clients carry fixed local
credentials; otherwise boto3's normal chain (role, profile, environment) applies.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol


class Settings(Protocol):
    """What a client needs from the settings (config.settings.Settings has it): the emulation's URL, if any."""

    @property
    def aws_endpoint_url(self) -> str | None: ...


LOCAL_REGION = "us-east-1"
_lock = threading.Lock()
_clients: dict[tuple[str, str | None], Any] = {}


def client(service: str, settings: Settings) -> Any:
    key = (service, settings.aws_endpoint_url)
    found = _clients.get(key)
    if found is None:
        with _lock:
            found = _clients.get(key)
            if found is None:
                found = _clients[key] = _make(service, settings.aws_endpoint_url)
    return found


def _make(service: str, endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # Short timeouts and few retries: the ledger write has a budget of its own and a fallback.
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"},
                    max_pool_connections=50)
    options: dict[str, Any] = {"config": config}
    if endpoint_url:
        options.update(endpoint_url=endpoint_url, region_name=LOCAL_REGION, aws_access_key_id="local",
                       aws_secret_access_key="local")
    elif not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        options["region_name"] = LOCAL_REGION
    return boto3.session.Session().client(service, **options)


def warm(settings: Settings) -> threading.Thread:
    """Build the DynamoDB and Secrets Manager clients on a background thread."""

    def build() -> None:
        client("dynamodb", settings)
        client("secretsmanager", settings)

    thread = threading.Thread(target=build, name="aws-warm", daemon=True)
    thread.start()
    return thread


def reset() -> None:
    """Forget every client (tests switch endpoints between cases)."""
    with _lock:
        _clients.clear()
