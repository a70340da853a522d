"""The AWS credentials Bedrock calls are signed with: botocore's default chain (on Lambda, the function's role).

Cheap to import: botocore loads inside the calls that need it, which run off the event loop (a worker thread,
or the background warm-up), never at start-up. Where the chain found the credentials is said in words an
operator can act on, for the log only: a caller never learns it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.credentials import Credentials, ReadOnlyCredentials
    from botocore.session import Session

_SOURCES = {
    "env": "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)",
    "shared-credentials-file": "the shared credentials file (~/.aws/credentials, profile {profile})",
    "config-file": "the AWS config file (~/.aws/config, profile {profile})",
    "custom-process": "credential_process of profile {profile}",
    "sso": "IAM Identity Center (SSO) login of profile {profile}",
    "login": "aws login of profile {profile}",
    "assume-role": "a role assumed by profile {profile}",
    "assume-role-with-web-identity": "a web identity role (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE)",
    "container-role": "the container's task role",
    "iam-role": "the instance role (EC2 instance metadata)",
}


class CredentialsUnavailable(Exception):
    """botocore's chain found nothing, or failed to load what it found; the message says which."""


class AwsCredentials:
    """botocore's default credential chain, resolved off the event loop and refreshed before expiry.

    Resolving may read files, run a credential_process, or call the instance metadata service, so it
    runs in a worker thread, never on the loop. Once resolved, a call costs one comparison: temporary
    credentials are refreshed in the background inside `refresh_ahead_s` of their expiry, and a call
    waits for the refresh only inside `must_refresh_s` (botocore's own advisory and mandatory windows).
    A chain that found nothing is asked again only after `retry_missing_s`, so a gateway without AWS
    credentials does not stampede the metadata service.
    """

    def __init__(self, session_factory: Callable[[], Session] | None = None, *, refresh_ahead_s: float = 15 * 60,
                 must_refresh_s: float = 10 * 60, retry_missing_s: float = 30.0) -> None:
        self.session_factory = session_factory  # None: botocore's own Session, imported when first asked
        self.refresh_ahead_s = refresh_ahead_s
        self.must_refresh_s = must_refresh_s
        self.retry_missing_s = retry_missing_s
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._profile = "default"
        self._missing: tuple[float, str] | None = None  # (monotonic retry time, reason)
        self._refreshing = False

    @property
    def found(self) -> bool:
        """Whether credentials were resolved (for /v1/models: list Bedrock models only when they were)."""
        return self._frozen is not None

    @property
    def source(self) -> str:
        """Where botocore found the credentials, in words an operator can act on."""
        method = getattr(self._credentials, "method", None)
        if method == "env" and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            return "the function's execution role (environment variables set by Lambda)"
        template = _SOURCES.get(method or "", f"botocore's credential chain ({method or 'unknown source'})")
        return template.format(profile=self._profile)

    async def current(self) -> ReadOnlyCredentials:
        """Credentials to sign one request with; raises CredentialsUnavailable."""
        frozen = self._frozen
        if frozen is None or self._expires_within(self.must_refresh_s):
            return await asyncio.to_thread(self.load)
        if self._expires_within(self.refresh_ahead_s):
            self._refresh_in_background()
        return frozen

    def load(self) -> ReadOnlyCredentials:
        """Resolve (first time) or refresh (temporary credentials), blocking: call it off the event loop."""
        from botocore.exceptions import BotoCoreError

        with self._lock:
            if self._credentials is None:
                self._credentials = self._resolve()
            try:
                frozen = self._credentials.get_frozen_credentials()
            except (BotoCoreError, RuntimeError) as exc:
                raise CredentialsUnavailable(f"refreshing the credentials from {self.source} failed: {exc}") from None
            self._frozen = frozen
            return frozen

    def invalidate(self) -> None:
        """AWS refused the credentials: the next call resolves the chain afresh (files may have changed)."""
        with self._lock:
            self._credentials = self._frozen = None
            self._missing = None

    def _resolve(self) -> Credentials:
        from botocore.exceptions import BotoCoreError
        from botocore.session import Session

        if self._missing is not None and time.monotonic() < self._missing[0]:
            raise CredentialsUnavailable(self._missing[1])
        try:
            session = (self.session_factory or Session)()
            credentials = session.get_credentials()
            self._profile = session.profile or "default"
        except (BotoCoreError, RuntimeError) as exc:
            reason = f"botocore could not load AWS credentials: {exc}"
            self._missing = (time.monotonic() + self.retry_missing_s, reason)
            raise CredentialsUnavailable(reason) from None
        if credentials is None:
            reason = ("botocore's default chain found no AWS credentials (environment variables, a profile or "
                      "SSO login in ~/.aws, a container or instance role)")
            self._missing = (time.monotonic() + self.retry_missing_s, reason)
            raise CredentialsUnavailable(reason)
        self._missing = None
        return credentials

    def _expires_within(self, seconds: float) -> bool:
        # Only botocore's RefreshableCredentials can expire, and they say when.
        refresh_needed = getattr(self._credentials, "refresh_needed", None)
        return refresh_needed is not None and bool(refresh_needed(seconds))

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh_quietly, name="bedrock-credentials", daemon=True).start()

    def _refresh_quietly(self) -> None:
        try:
            self.load()
        except CredentialsUnavailable:
            pass  # the current credentials still serve; a call inside must_refresh_s retries and reports
        finally:
            self._refreshing = False
