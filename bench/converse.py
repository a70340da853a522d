"""Bedrock's ConverseStream, spoken directly to the simulator: the baseline `gw-bedrock` is compared to.

The request is signed with SigV4 by botocore, as boto3 would sign it, before the clock starts (signing is
the client's work, not the upstream's); the answer, an AWS event stream, is read by botocore's own parser.
TTFT is the first `contentBlockDelta` carrying text; total is the stream's last event, `metadata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, ParserError

SERVICE = "bedrock"  # Bedrock Runtime signs as `bedrock`


@dataclass(frozen=True)
class AwsCredentials:
    """What ConverseStream requests are signed with: obviously fake, and what the simulator is told to accept."""

    access_key_id: str
    secret_access_key: str
    region: str


def converse_path(model_id: str) -> str:
    """/model/<id>/converse-stream, the id escaped as botocore escapes it (`:` becomes %3A)."""
    return f"/model/{quote(model_id, safe='')}/converse-stream"


def converse_body(prompt: str) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": [{"text": prompt}]}]}).encode()


def signed_headers(url: str, body: bytes, aws: AwsCredentials) -> dict[str, str]:
    """The headers of a SigV4-signed POST of `body` to `url` (content-type, x-amz-date, authorization)."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(aws.access_key_id, aws.secret_access_key), SERVICE, aws.region).add_auth(request)
    return dict(request.headers.items())


class ConverseWatcher:
    """Reads a ConverseStream event stream as it arrives, in chunks split anywhere; the same surface as
    bench.stats.StreamWatcher (first_token, done, content_events, error)."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self.first_token = False
        self.done = False
        self.content_events = 0
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self._buffer.add_data(data)
        try:
            for message in self._buffer:
                self._message(message.headers, message.payload)
        except ParserError as exc:
            self.error = self.error or f"a broken event stream: {exc}"
            self.done = True

    def _message(self, headers: dict, payload: bytes) -> None:
        if headers.get(":message-type") != "event":
            kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
            self.error = self.error or f"{kind}: {payload[:200].decode(errors='replace')}"
            self.done = True
            return
        kind = headers.get(":event-type")
        if kind == "contentBlockDelta" and _delta_text(payload):
            self.content_events += 1
            self.first_token = True
        elif kind == "metadata":
            self.done = True


def _delta_text(payload: bytes) -> str:
    try:
        delta = json.loads(payload).get("delta")
    except (ValueError, AttributeError):
        return ""
    text = delta.get("text") if isinstance(delta, dict) else None
    return text if isinstance(text, str) else ""
