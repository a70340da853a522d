"""SigV4 for Bedrock, by botocore's own signer (service `bedrock`): the headers that make a request AWS's.

The URL is signed as it is sent, byte for byte: the model id in its path is already encoded (%3A, %2F), and
turning it back would break the signature. Imports botocore: loaded with the adapter, on first use.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

SIGNING_NAME = "bedrock"


def sign(url: str, body: bytes, headers: dict[str, str], credentials: ReadOnlyCredentials,
         region: str) -> dict[str, str]:
    """`headers` plus X-Amz-Date, the session token and Authorization, by botocore's SigV4 signer."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"host": host_header(url), **headers})
    SigV4Auth(credentials, SIGNING_NAME, region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


def host_header(url: str) -> str:
    """The Host header, signed and sent alike (the port only when it is not the scheme's default)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host
