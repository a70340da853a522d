"""Bedrock's Converse API behind the `Adapter` contract: the request map (request.py) and the stream
transform (stream.py), with the signing (signing.py), the HTTP and AWS's event stream (eventstream.py) between.

Imports botocore (a fifth of a second): `bedrock.create` loads this module on the family's first use, or
in the background warm-up, never at start-up.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from botocore.credentials import ReadOnlyCredentials
from botocore.eventstream import EventStreamMessage

from switchboard.observability import logger
from switchboard.providers._translate import as_dict
from switchboard.providers.base import OpenedStream, UpstreamStats, stream_batches
from switchboard.providers.bedrock.config import BedrockConfig
from switchboard.providers.bedrock.credentials import AwsCredentials, CredentialsUnavailable
from switchboard.providers.bedrock.errors import CREDENTIAL_ERRORS, Secrets, aws_error, http_error
from switchboard.providers.bedrock.eventstream import read_messages
from switchboard.providers.bedrock.request import check_model_id, converse_request, converse_url
from switchboard.providers.bedrock.signing import sign
from switchboard.providers.bedrock.stream import StreamTranslator, completion_from_converse, latency
from switchboard.providers.transport.client import UpstreamClient
from switchboard.providers.transport.response import UpstreamResponse
from switchboard.providers.upstream import post, read_error_body, read_json
from switchboard.wire.chat import Batch, Route, UpstreamError
from switchboard.wire.json import dumps

MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class BedrockAdapter:
    """`credentials` looks up the process's AWS credentials at each call (one holder per process: every
    Bedrock call signs with what it holds, and a test can swap it for a fresh one)."""

    def __init__(self, config: BedrockConfig, credentials: Callable[[], AwsCredentials]) -> None:
        self.config = config
        self.credentials = credentials

    def stream(self, client: UpstreamClient, route: Route, body: dict,
               stats: UpstreamStats | None = None) -> AsyncGenerator[Batch, None]:
        async def open_stream() -> OpenedStream[EventStreamMessage]:
            response, secrets = await self._open(client, route, body, stream=True)
            translator = StreamTranslator(route.model, response.headers.get("x-amzn-requestid"),
                                          provider=route.provider, secrets=secrets, stats=stats)
            return OpenedStream(response, read_messages(response, route.provider), translator)

        return stream_batches(open_stream, route.provider, "messageStop")

    async def complete(self, client: UpstreamClient, route: Route, body: dict,
                       stats: UpstreamStats | None = None) -> dict:
        response, _ = await self._open(client, route, body, stream=False)
        request_id = response.headers.get("x-amzn-requestid")
        parsed = await read_json(response, route.provider, MAX_RESPONSE_BYTES)
        if not isinstance(parsed, dict) or not isinstance(as_dict(parsed.get("output")).get("message"), dict):
            raise UpstreamError(502, f"Upstream provider '{route.provider}' answered with something that is not "
                                "a Converse response.", kind="http_error")
        if stats is not None:
            stats.latency_ms = latency(parsed.get("metrics"))
        return completion_from_converse(parsed, route.model, request_id)

    def usable(self, route: Route | None = None) -> str | None:
        if self.credentials().found:
            return None
        return "the gateway has no AWS credentials (botocore's chain has found none yet)"

    def warm(self) -> None:
        credentials = self.credentials()
        if credentials.found:
            return  # a call resolved them already: loading again would only refresh them early
        try:
            credentials.load()
        except CredentialsUnavailable:
            pass  # no credentials here: Bedrock is simply not listed, and a call says why

    async def _open(self, client: UpstreamClient, route: Route, body: dict,
                    stream: bool) -> tuple[UpstreamResponse, Secrets]:
        """Sign and send: a 2xx response and the secrets it was signed with, or UpstreamError (GatewayError for
        the caller's own mistakes, before any traffic). Expired credentials are refreshed and tried once more."""
        check_model_id(route.model)
        url = converse_url(route.base_url, route.model, stream)
        payload = dumps(converse_request(body, route.model, self.config.default_max_tokens))
        region = self.config.signing_region(route.base_url)
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        holder = self.credentials()
        for attempt in (1, 2):
            credentials = await _signing_credentials(holder, route.provider, region)
            secrets = (credentials.secret_key, credentials.token)
            headers = sign(url, payload, {"content-type": "application/json", "accept": accept}, credentials, region)
            headers["accept-encoding"] = "identity"
            # Already encoded, and sent byte for byte: turning %3A back into ":" would break the signature.
            response = await post(client, url, headers, payload, route.provider)
            if response.status < 300:
                return response, secrets
            raw = await read_error_body(response, secrets)
            error_type, message = aws_error(raw, response.headers, secrets)
            source = holder.source
            if error_type in CREDENTIAL_ERRORS:
                holder.invalidate()  # the next call resolves the chain again rather than reuse refused keys
                if error_type == "ExpiredTokenException" and attempt == 1:
                    continue
            raise http_error(response.status, error_type, message, provider=route.provider,
                             stream=stream, region=region, credentials_source=source)
        raise AssertionError("unreachable")


async def _signing_credentials(holder: AwsCredentials, provider: str, region: str) -> ReadOnlyCredentials:
    """The credentials to sign with. Why there are none (which may name files, profiles or a process's
    output) is for the operator's log; the caller learns only that the gateway cannot sign."""
    try:
        return await holder.current()
    except CredentialsUnavailable as exc:
        logger.warning("Bedrock calls cannot be signed", extra={
            "error_type": "CredentialsUnavailable", "region": region, "hint": str(exc)})
        raise UpstreamError(502, f"Upstream provider '{provider}' cannot sign requests: the gateway has no usable "
                            "AWS credentials (its log says why).", kind="aws_credentials") from None
