"""Bedrock's refusals as UpstreamError: AWS's error type, its message, and what the operator can do about it.

An AWS refusal of the gateway's own credentials tells the caller only that (and AWS's error type); where
botocore found them goes to the log, for the operator. Key material never leaves: error bodies come here
scrubbed of the secret key and session token as read, and every cut (`clip`) leaves no key's first characters.
An exception inside a 200 stream is treated exactly like the same failure as an HTTP status, so that
retries and fallbacks key on it alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from switchboard.observability import logger
from switchboard.providers.bedrock.config import INVOKE_ACTION, STREAM_ACTION
from switchboard.providers.errors import clip
from switchboard.wire.chat import UpstreamError

# In-stream exceptions, as the HTTP status the same failure gets outside a stream (what retries key on).
_STREAM_EXCEPTION_STATUS = {
    "throttlingException": 429,
    "validationException": 400,
    "modelStreamErrorException": 502,
    "internalServerException": 502,
    "serviceUnavailableException": 502,
}
# AWS error types that say the signature's credentials are at fault, and what to tell the operator.
CREDENTIAL_ERRORS = {
    "UnrecognizedClientException": "are not recognised by AWS (a wrong access key id or session token)",
    "InvalidSignatureException": "do not match (a wrong secret access key, or a clock far off)",
    "ExpiredTokenException": "have expired",
    "MissingAuthenticationTokenException": "were not sent",
    "IncompleteSignatureException": "produced an incomplete signature",
}
THROTTLED = frozenset({"ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException"})
Secrets = tuple[str | None, ...]  # the secret key and session token a request was signed with


def http_error(status: int, error_type: str, message: str, *, provider: str, stream: bool, region: str,
               credentials_source: str) -> UpstreamError:
    """An HTTP-level refusal, with AWS's error type, its message, and what the operator can do about it.
    A refusal of the gateway's own credentials tells the caller only that; the rest goes to the log."""
    if error_type in CREDENTIAL_ERRORS:
        text = f"Upstream provider '{provider}' refused the gateway's AWS credentials ({error_type})."
        logger.warning("Bedrock refused the gateway's AWS credentials", extra={
            "error_type": error_type, "upstream_status": status, "region": region,
            "hint": f"The AWS credentials the gateway signs with {CREDENTIAL_ERRORS[error_type]}; botocore "
                    f"found them in {credentials_source}."})
    else:
        text = f"Upstream provider '{provider}' returned {status} {error_type or 'error'}: {message or 'no message'}"
        hint = _hint(error_type, message, stream=stream, region=region)
        if hint:
            text = f"{text} {hint}"
    if status < 400:  # never followed: a redirect could point anywhere, the metadata address included
        return UpstreamError(502, text + " (redirect not followed)", kind="redirect_refused", upstream_status=status)
    if error_type in THROTTLED:
        return UpstreamError(429, text, kind="http_error", upstream_status=status)
    if error_type == "ModelTimeoutException" or status == 408:
        return UpstreamError(504, text, kind="timeout", upstream_status=status)
    if 400 <= status < 500 and status != 424:  # 424: the model itself failed, worth another route
        return UpstreamError(status, text, kind="http_error", upstream_status=status)
    return UpstreamError(502, text, kind="http_error", upstream_status=status)


def _hint(error_type: str, message: str, *, stream: bool, region: str) -> str:
    """What the operator can do about a refusal: safe for any caller to read (it names no credential source)."""
    if error_type == "AccessDeniedException":
        action = STREAM_ACTION if stream else INVOKE_ACTION
        if "not authorized" in message:
            return (f"Grant the gateway's IAM role {action} on this model (template.yaml grants it on the "
                    "models the BedrockModelArns parameter allows).")
        return (f"Enable access to this model in the Bedrock console (Model access) in {region}, and make sure "
                f"the gateway's IAM role may call {action} on it.")
    if error_type == "ValidationException" and "inference profile" in message:
        return "Name the model by its cross-region inference profile, for example bedrock/us.<model id>."
    if error_type == "ResourceNotFoundException":
        return f"Check the model id and that {region} offers it (or use a cross-region inference profile)."
    return ""


def stream_exception(provider: str, exception_type: str, message: str, secrets: Secrets = ()) -> UpstreamError:
    """An exception inside a 200 stream, treated exactly like the same failure as an HTTP status."""
    status = _STREAM_EXCEPTION_STATUS.get(exception_type, 502)
    upstream_status = {"throttlingException": 429, "validationException": 400, "internalServerException": 500,
                       "serviceUnavailableException": 503, "modelStreamErrorException": 424}.get(exception_type)
    text = f"Upstream provider '{provider}' failed mid-stream: {exception_type or 'error'}: {message or 'no message'}"
    return UpstreamError(status, clip(text, 1200, secrets), kind="stream_error", upstream_status=upstream_status)


def aws_error(raw: bytes, headers: Mapping[str, str], secrets: Secrets = ()) -> tuple[str, str]:
    """(error type, message) of an AWS JSON error response: the type from x-amzn-errortype or the body.
    `raw` comes scrubbed (`scrub_bytes`); what JSON decoding reveals is scrubbed again as it is cut."""
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        decoded = None
    parsed = decoded if isinstance(decoded, dict) else {}
    error_type = str(headers.get("x-amzn-errortype") or parsed.get("__type") or "")
    error_type = error_type.split(":", 1)[0].rsplit("#", 1)[-1]  # "Type:http://..." and "ns#Type" both
    message = parsed.get("message") or parsed.get("Message")
    if isinstance(message, str):
        message = clip(message, 1000, secrets)
    else:
        message = "" if parsed else clip(raw[:1200].decode("utf-8", "replace"), 300, secrets).strip()
    return clip(error_type, 100, secrets), message
