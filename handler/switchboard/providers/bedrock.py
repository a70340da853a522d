"""Amazon Bedrock's Converse API, signed with the gateway's own AWS credentials, translated to and from
OpenAI Chat Completions.

No provider key: requests are signed with SigV4 (service `bedrock`) by botocore's own signer, with
credentials from botocore's default chain (on Lambda the function's role). The translation is pure
(`converse_request`, `StreamTranslator`, `completion_from_converse`) so it can be tested without a
socket; the rest adds the signing, the HTTP and AWS's binary event stream, decoded as it arrives by
botocore's parser. Bedrock quirks live here: the model id URL-encoded in the path, conversations that
must open with a user turn and alternate, blank text refused, a tool config required whenever the
history holds tool blocks, and exceptions that arrive inside a 200 stream.

Model ids are checked before anything is signed or sent (`check_model_id`): 1 to 2048 characters from
A-Z a-z 0-9 . _ : / -, '/' only inside an ARN, no empty or dot-only segment (a "..", once in the
signed path, would be a dot segment). Anything else is the caller's 400, never a failed attempt.

Reasoning: OpenAI's `reasoning_effort` goes in `additionalModelRequestFields`, which Bedrock hands
to the model's native API, by the model's family (`reasoning_fields`; a cross-region profile and an
ARN name the model they serve):

  reasoning_effort  Claude before 4.6     Claude 4.6 and later         gpt-oss            Nova 2
  none              off                   off                          omitted            omitted
  minimal           off                   off                          "low"              low
  low               budget_tokens 1024    adaptive, effort "low"       "low"              low
  medium            4096                  adaptive, "medium"           "medium"           medium
  high              16384                 adaptive, "high"             "high"             high
  xhigh, max        32768                 adaptive, "max"              "high"             high

Claude: `{"thinking": {"type": "enabled", "budget_tokens": B}}`, or for 4.6 and later `{"thinking":
{"type": "adaptive"}, "output_config": {"effort": E}}` (Anthropic's own Messages shape; that Bedrock
passes it through unchanged is not verified against AWS). The rules are the Anthropic adapter's:
a client's max tokens (inferenceConfig.maxTokens) is kept and the budget capped at half of it (under
1024 thinking stays off); with none, maxTokens is SWITCHBOARD_ANTHROPIC_MAX_TOKENS plus the budget;
temperature only at exactly 1, topP only from 0.95; off with a forced tool, in a tool-use turn in
progress and after a prefill. gpt-oss: `{"reasoning_effort": ...}`; Nova 2: `{"reasoningConfig":
{"type": "enabled", "maxReasoningEffort": ...}}`. Any other model (DeepSeek R1 always reasons; Llama,
Mistral, Nova 1 never do) gets nothing. ConverseStream's reasoningContent text becomes
`reasoning_content`; its signatures and redacted content are dropped.

Errors: an AWS refusal of the gateway's credentials tells the caller only that (and AWS's error type);
where botocore found them goes to the log, for the operator. Key material never leaves: error bodies
are scrubbed of the secret key and session token as read, before anything parses or cuts them, and
every cut (`clip`) leaves no key's first characters behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError
from botocore.exceptions import BotoCoreError
from botocore.session import Session
from botocore.utils import percent_encode

from switchboard.config.settings import Settings
from switchboard.observability import logger
from switchboard.providers import transport
from switchboard.providers.base import as_dict, broken_read, clip, post, read_body, scrub_bytes, tool_arguments
from switchboard.providers.transport import UpstreamClient, UpstreamResponse
from switchboard.wire.chat import Chunk, Route, UpstreamError, chat_usage, is_number, token_count
from switchboard.wire.errors import GatewayError
from switchboard.wire.json import dumps

SIGNING_NAME = "bedrock"
DEFAULT_REGION = "us-east-1"  # only to sign for an endpoint override when no region is set at all
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
LATENCY_KEY = "x_bedrock_latency_ms"  # on the usage chunk's parsed dict (never on the wire): Bedrock's own figure
STREAM_ACTION = "bedrock:InvokeModelWithResponseStream"
INVOKE_ACTION = "bedrock:InvokeModel"
# Converse refuses a conversation that opens with the assistant, and ElevenLabs agents open with their greeting.
CONVERSATION_START = "(conversation start)"
EMPTY_TOOL_RESULT = "(no output)"  # Converse refuses blank text, and a tool may well return nothing
_EMPTY_SCHEMA = {"type": "object", "properties": {}}

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# In-stream exceptions, as the HTTP status the same failure gets outside a stream (what retries key on).
_STREAM_EXCEPTION_STATUS = {
    "throttlingException": 429,
    "validationException": 400,
    "modelStreamErrorException": 502,
    "internalServerException": 502,
    "serviceUnavailableException": 502,
}
# AWS error types that say the signature's credentials are at fault, and what to tell the operator.
_CREDENTIAL_ERRORS = {
    "UnrecognizedClientException": "are not recognised by AWS (a wrong access key id or session token)",
    "InvalidSignatureException": "do not match (a wrong secret access key, or a clock far off)",
    "ExpiredTokenException": "have expired",
    "MissingAuthenticationTokenException": "were not sent",
    "IncompleteSignatureException": "produced an incomplete signature",
}
_THROTTLED = frozenset({"ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException"})
Secrets = tuple[str | None, ...]  # the secret key and session token a request was signed with
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


# Reasoning (see the module docstring). The Claude tables are the Anthropic adapter's: a family never imports
# another, so they are repeated here, and a test holds them equal.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # OpenAI's values
NO_THINKING = frozenset({"none", "minimal"})
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}
ADAPTIVE_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "max", "max": "max"}
ADAPTIVE_SINCE = (4, 6)
MIN_THINKING_BUDGET = 1024
MIN_TOP_P_THINKING = 0.95
# gpt-oss and Nova 2 take low, medium and high: the efforts either side fold onto the nearest.
FOLDED_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_CLAUDE_VERSION = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2})(?!\d))?|(\d+)(?:-(\d)(?!\d))?-)")
# Cross-region inference profiles, as the price catalog strips them (ledger.pricing.bedrock_base_model).
_PROFILE_PREFIX = re.compile(r"^(us|eu|apac|global|au|jp|ca|us-gov)\.")
_MODEL_ID = re.compile(r"[A-Za-z0-9._:/-]{1,2048}")
MODEL_ID_FORMS = ("a model id (anthropic.claude-haiku-4-5-20251001-v1:0), an inference profile id "
                  "(us.anthropic.claude-haiku-4-5-20251001-v1:0) or an ARN (arn:aws:bedrock:...)")


# --- addressing ------------------------------------------------------------------------------------


def check_model_id(model: str) -> None:
    """Refuse (400) a model id that is none of the forms Bedrock takes, before it reaches a signed path."""
    segments = model.split("/")
    if (_MODEL_ID.fullmatch(model) is None or (len(segments) > 1 and not model.startswith("arn:"))
            or any(not segment.strip(".") for segment in segments)):
        raise GatewayError(400, f"'{model[:100]}' is not a Bedrock model id. Name {MODEL_ID_FORMS}: 1 to 2048 "
                           "characters from A-Z a-z 0-9 . _ : / -, with '/' only in an ARN and no empty or "
                           "dot-only part.", param="model", code="invalid_model")


def base_model_id(model: str) -> str:
    """The model a cross-region inference profile ('us.anthropic.claude-...') or an ARN serves."""
    if model.startswith("arn:"):
        model = model.rsplit("/", 1)[-1]
    return _PROFILE_PREFIX.sub("", model)



def converse_url(base_url: str, model: str, stream: bool) -> str:
    """The operation's URL, the model id encoded as the AWS SDKs encode a path label (":" -> %3A, "/" -> %2F)."""
    operation = "converse-stream" if stream else "converse"
    return f"{base_url}/model/{percent_encode(model, safe='-_.~')}/{operation}"


def signing_region(settings: Settings, base_url: str) -> str:
    """The configured region, else the one in a regional endpoint's host name, else us-east-1."""
    if settings.bedrock_region:
        return settings.bedrock_region
    host = urlsplit(base_url).hostname or ""
    labels = host.split(".")
    if "bedrock-runtime" in labels and labels.index("bedrock-runtime") + 1 < len(labels):
        candidate = labels[labels.index("bedrock-runtime") + 1]
        if candidate[:1].isalpha() and "-" in candidate:
            return candidate
    return DEFAULT_REGION


def _host(url: str) -> str:
    """The Host header, signed and sent alike (the port only when it is not the scheme's default)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


# --- credentials -----------------------------------------------------------------------------------


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

    def __init__(self, session_factory: Callable[[], Session] = Session, *, refresh_ahead_s: float = 15 * 60,
                 must_refresh_s: float = 10 * 60, retry_missing_s: float = 30.0) -> None:
        self.session_factory = session_factory
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
        if self._missing is not None and time.monotonic() < self._missing[0]:
            raise CredentialsUnavailable(self._missing[1])
        try:
            session = self.session_factory()
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
        credentials = self._credentials
        return isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed(seconds)

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


CREDENTIALS = AwsCredentials()  # one per process: every Bedrock call signs with what it holds


def sign(url: str, body: bytes, headers: dict[str, str], credentials: ReadOnlyCredentials,
         region: str) -> dict[str, str]:
    """`headers` plus X-Amz-Date, the session token and Authorization, by botocore's SigV4 signer."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"host": _host(url), **headers})
    SigV4Auth(credentials, SIGNING_NAME, region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


# --- request: OpenAI chat.completions -> Converse ----------------------------------------------------


def converse_request(body: dict, model: str = "", default_max_tokens: int = 4096) -> dict:
    """The Converse / ConverseStream body for an OpenAI request (the model id goes in the path).
    `default_max_tokens` is SWITCHBOARD_ANTHROPIC_MAX_TOKENS: the answer's room when Claude thinks."""
    system, messages = translate_messages(body.get("messages") or [])
    payload: dict = {"messages": messages}
    if system:
        payload["system"] = system
    tool_config = translate_tools(body.get("tools"), body.get("tool_choice"), messages)
    if tool_config:
        payload["toolConfig"] = tool_config
    inference = inference_config(body)
    extra = reasoning_fields(payload, inference, base_model_id(model), requested_effort(body), default_max_tokens)
    if extra:
        payload["additionalModelRequestFields"] = extra
    if inference:
        payload["inferenceConfig"] = inference
    if isinstance(body.get("simulator"), dict):
        payload["simulator"] = body["simulator"]  # pacing for the simulated upstream; real clients never send it
    return payload


def translate_messages(messages: list) -> tuple[list[dict], list[dict]]:
    """OpenAI messages -> (system blocks, Converse messages): same-role turns merged, a user turn first."""
    system: list[dict] = []
    out: list[dict] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text.strip():
                system.append({"text": text})
        elif role == "user":
            _append(out, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            _append(out, "assistant", _assistant_blocks(message))
        elif role == "tool":
            _append(out, "user", [_tool_result(message)])
    if out and out[0]["role"] == "assistant":
        out.insert(0, {"role": "user", "content": [{"text": CONVERSATION_START}]})
    return system, out


def _append(out: list[dict], role: str, blocks: list[dict]) -> None:
    """Converse wants turns to alternate: a turn of the same role as the last one joins it."""
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _user_blocks(content: object) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    blocks = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            text = str(part.get("text") or "")
            if text.strip():
                blocks.append({"text": text})
        elif part.get("type") == "image_url":
            blocks.append(image_block(part.get("image_url")))
        else:
            raise GatewayError(400, f"Bedrock models do not accept '{part.get('type')}' content parts.",
                               param="messages", code="unsupported_content")
    return blocks


def image_block(image_url: object) -> dict:
    """An OpenAI image_url part -> a Converse image block. Converse takes bytes (or S3), never a web URL."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.startswith("data:image/"):
        raise GatewayError(400, "Bedrock models take images as data: URLs ('data:image/png;base64,...') only.",
                           param="messages", code="invalid_image")
    header, comma, data = url[len("data:image/"):].partition(",")
    image_format, _, encoding = header.partition(";")
    image_format = "jpeg" if image_format == "jpg" else image_format
    if not comma or encoding != "base64" or image_format not in ("png", "jpeg", "gif", "webp"):
        raise GatewayError(400, "An image data: URL must be base64 PNG, JPEG, GIF or WebP.", param="messages",
                           code="invalid_image")
    return {"image": {"format": image_format, "source": {"bytes": data}}}  # blobs travel base64 in JSON


def _assistant_blocks(message: dict) -> list[dict]:
    blocks: list[dict] = []
    text = _text_of(message.get("content"))
    if text.strip():
        blocks.append({"text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            blocks.append({"toolUse": {"toolUseId": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                                       "input": tool_arguments(function.get("arguments"))}})
    return blocks


def _tool_result(message: dict) -> dict:
    text = _text_of(message.get("content"))
    return {"toolResult": {"toolUseId": str(message.get("tool_call_id") or ""),
                           "content": [{"text": text if text.strip() else EMPTY_TOOL_RESULT}]}}


def translate_tools(tools: object, tool_choice: object, messages: list[dict]) -> dict | None:
    """`toolConfig`, or None. Converse has no "none" choice, so "none" withholds the tools; but a history
    with tool blocks needs a tool config, so then the tools it names are declared (schema-less if need be)."""
    specs = _tool_specs(tools)
    history = _history_tool_names(messages)
    if tool_choice == "none" or not specs:
        declared = {spec["toolSpec"]["name"] for spec in specs}
        specs = [spec for spec in specs if spec["toolSpec"]["name"] in history]
        specs += [{"toolSpec": {"name": name, "inputSchema": {"json": _EMPTY_SCHEMA}}}
                  for name in sorted(history - declared)]
        return {"tools": specs} if specs else None
    config: dict = {"tools": specs}
    choice = _tool_choice(tool_choice)
    if choice:
        config["toolChoice"] = choice
    return config


def _tool_specs(tools: object) -> list[dict]:
    specs = []
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        spec: dict = {"name": function["name"], "inputSchema": {"json": function.get("parameters") or _EMPTY_SCHEMA}}
        if isinstance(function.get("description"), str) and function["description"].strip():
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    return specs


def _history_tool_names(messages: list[dict]) -> set[str]:
    return {block["toolUse"]["name"] for message in messages for block in message["content"]
            if "toolUse" in block and block["toolUse"]["name"]}


def _tool_choice(tool_choice: object) -> dict | None:
    if tool_choice == "auto":
        return {"auto": {}}
    if tool_choice == "required":
        return {"any": {}}
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        return {"tool": {"name": name}} if isinstance(name, str) and name else None
    return None


def inference_config(body: dict) -> dict:
    config: dict = {}
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            config["maxTokens"] = value
            break
    if is_number(body.get("temperature")):
        config["temperature"] = min(float(body["temperature"]), 1.0)  # Bedrock's models take 0..1, OpenAI 0..2
    if is_number(body.get("top_p")):
        config["topP"] = float(body["top_p"])
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    sequences = [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []
    if sequences:
        config["stopSequences"] = sequences
    return config


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")






# --- reasoning: OpenAI reasoning_effort -> additionalModelRequestFields -------------------------------


def requested_effort(body: dict) -> str | None:
    """The client's reasoning_effort (None when absent); a value OpenAI does not define is a 400."""
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise GatewayError(400, f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}.",
                           param="reasoning_effort", code="invalid_reasoning_effort")
    return effort


def reasoning_fields(payload: dict, inference: dict, base_model: str, effort: str | None,
                     default_max_tokens: int) -> dict:
    """additionalModelRequestFields for the model's family; `inference` is adjusted to what thinking needs."""
    if effort is None or effort == "none":
        return {}
    if base_model.startswith("anthropic.claude"):
        return _claude_thinking(payload, inference, base_model, effort, default_max_tokens)
    if base_model.startswith("openai.gpt-oss"):
        return {"reasoning_effort": FOLDED_EFFORTS[effort]}
    if base_model.startswith("amazon.nova-2"):
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": FOLDED_EFFORTS[effort]}}
    return {}


def claude_version(model: str) -> tuple[int, int] | None:
    match = _CLAUDE_VERSION.search(model)
    if match is None:
        return None
    major, minor, old_major, old_minor = match.groups()
    if major is not None:
        return int(major), int(minor or 0)
    return int(old_major), int(old_minor or 0)


def _claude_thinking(payload: dict, inference: dict, base_model: str, effort: str, default_max_tokens: int) -> dict:
    if effort in NO_THINKING or not _thinking_allowed(payload):
        return {}
    budget = THINKING_BUDGETS[effort]
    client_max = inference.get("maxTokens")
    version = claude_version(base_model)
    if version is not None and version >= ADAPTIVE_SINCE:
        fields: dict = {"thinking": {"type": "adaptive"}, "output_config": {"effort": ADAPTIVE_EFFORTS[effort]}}
    else:
        if client_max is not None:
            budget = min(budget, client_max // 2)
            if budget < MIN_THINKING_BUDGET:
                return {}
        fields = {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if client_max is None:
        inference["maxTokens"] = default_max_tokens + budget
    if inference.get("temperature", 1) != 1:
        del inference["temperature"]
    if inference.get("topP", 1) < MIN_TOP_P_THINKING:
        del inference["topP"]
    return fields


def _thinking_allowed(payload: dict) -> bool:
    """Claude refuses thinking with a forced tool, and wants thinking blocks we never kept in a tool-use turn
    in progress and after a prefill (the Anthropic adapter's rules, on Converse's shapes)."""
    choice = as_dict(payload.get("toolConfig")).get("toolChoice")
    if isinstance(choice, dict) and ("any" in choice or "tool" in choice):
        return False
    messages = payload["messages"]
    if messages and messages[-1]["role"] == "assistant":
        return False
    assistant = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if not assistant:
        return True
    calls_tools = any("toolUse" in block for block in messages[assistant[-1]]["content"])
    answered = any("toolResult" in block for message in messages[assistant[-1] + 1:] for block in message["content"])
    return not (calls_tools and answered)


# --- response: Converse -> OpenAI --------------------------------------------------------------------


def finish_reason(stop_reason: object) -> str:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage(usage: dict) -> dict:
    """Bedrock counts cache reads and writes apart from `inputTokens`; OpenAI's prompt_tokens includes them."""
    return chat_usage(token_count(usage, "inputTokens"), token_count(usage, "outputTokens"),
                      token_count(usage, "cacheReadInputTokens"), token_count(usage, "cacheWriteInputTokens"))



def _latency(metrics: object) -> int | float | None:
    value = as_dict(metrics).get("latencyMs")
    return value if is_number(value) and value >= 0 else None


class StreamTranslator:
    """ConverseStream events -> OpenAI chunks, one event at a time, no I/O.

    `stopped` turns true at messageStop (the answer is whole), `complete` at metadata (nothing follows).
    """

    def __init__(self, model: str, request_id: str | None = None, created: int | None = None) -> None:
        self.id = f"chatcmpl-{request_id}" if request_id else "chatcmpl-bedrock"
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.stopped = False
        self.complete = False
        self.latency_ms: int | float | None = None
        self._started = False
        self._tool_index: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self._awaiting_input: set[int] = set()  # tool blocks that have had no input fragment yet
        self._open_tools: set[int] = set()

    def feed(self, event_type: str, event: dict) -> list[dict]:
        handler = getattr(self, "_on_" + event_type, None)
        if handler is None:
            return []  # an event this version does not know: skipped, never fatal
        chunks = handler(event)
        if chunks and not self._started:  # every stream opens with the role, even one that skipped messageStart
            self._started = True
            chunks.insert(0, self._chunk({"role": "assistant", "content": ""}))
        return chunks

    def _on_messageStart(self, event: dict) -> list[dict]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_contentBlockStart(self, event: dict) -> list[dict]:
        tool = as_dict(as_dict(event.get("start")).get("toolUse"))
        block = event.get("contentBlockIndex")
        if not tool or not isinstance(block, int) or block in self._tool_index:
            return []
        index = self._tool_index[block] = len(self._tool_index)
        self._awaiting_input.add(block)
        self._open_tools.add(block)
        call = {"index": index, "id": tool.get("toolUseId"), "type": "function",
                "function": {"name": tool.get("name"), "arguments": ""}}
        return [self._chunk({"tool_calls": [call]})]

    def _on_contentBlockDelta(self, event: dict) -> list[dict]:
        delta = as_dict(event.get("delta"))
        text = delta.get("text")
        if isinstance(text, str):
            return [self._chunk({"content": text})] if text else []  # some models send an empty delta first
        fragment = as_dict(delta.get("toolUse")).get("input")
        block = event.get("contentBlockIndex")
        if isinstance(fragment, str):
            if not fragment or block not in self._open_tools:
                return []  # nothing to add, or a late fragment for a block already stopped
            self._awaiting_input.discard(block)  # type: ignore[arg-type]
            call = {"index": self._tool_index[block], "function": {"arguments": fragment}}  # type: ignore[index]
            return [self._chunk({"tool_calls": [call]})]
        reasoning = as_dict(delta.get("reasoningContent")).get("text")
        if isinstance(reasoning, str) and reasoning:
            return [self._chunk({"reasoning_content": reasoning})]
        return []  # reasoning signatures, redacted reasoning, citations

    def _on_contentBlockStop(self, event: dict) -> list[dict]:
        block = event.get("contentBlockIndex")
        if not isinstance(block, int) or block not in self._open_tools:
            return []
        self._open_tools.discard(block)
        return self._empty_input(block)

    def _empty_input(self, block: int) -> list[dict]:
        """A tool that takes no input streams no fragment; its arguments are still an object: "{}"."""
        if block not in self._awaiting_input:
            return []
        self._awaiting_input.discard(block)
        return [self._chunk({"tool_calls": [{"index": self._tool_index[block], "function": {"arguments": "{}"}}]})]

    def _on_messageStop(self, event: dict) -> list[dict]:
        if self.stopped:
            return []
        self.stopped = True
        chunks = [chunk for block in sorted(self._awaiting_input) for chunk in self._empty_input(block)]
        self._open_tools.clear()
        return chunks + [self._chunk({}, finish_reason(event.get("stopReason")))]

    def _on_metadata(self, event: dict) -> list[dict]:
        if self.complete:
            return []
        self.complete = True
        self.latency_ms = _latency(event.get("metrics"))
        return [{**self._envelope(), "choices": [], "usage": openai_usage(as_dict(event.get("usage")))}]

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._envelope(), "choices": [choice]}

    def _envelope(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}


def completion_from_converse(response: dict, model: str, request_id: str | None = None,
                             created: int | None = None) -> dict:
    """A Converse response -> an OpenAI chat.completion; Bedrock's latency rides along under LATENCY_KEY."""
    blocks = [b for b in as_dict(as_dict(as_dict(response.get("output")).get("message"))).get("content") or []
              if isinstance(b, dict)]
    text = "".join(b["text"] for b in blocks if isinstance(b.get("text"), str))
    reasoning = "".join(str(as_dict(as_dict(b.get("reasoningContent")).get("reasoningText")).get("text") or "")
                        for b in blocks)
    tool_calls = [_tool_call(as_dict(b.get("toolUse"))) for b in blocks if isinstance(b.get("toolUse"), dict)]
    reply: dict = {"role": "assistant", "content": text or None, "refusal": None}
    if reasoning:
        reply["reasoning_content"] = reasoning
    if tool_calls:
        reply["tool_calls"] = tool_calls
    completion = {"id": f"chatcmpl-{request_id}" if request_id else "chatcmpl-bedrock", "object": "chat.completion",
                  "created": created if created is not None else int(time.time()), "model": model,
                  "choices": [{"index": 0, "message": reply, "logprobs": None,
                               "finish_reason": finish_reason(response.get("stopReason"))}],
                  "usage": openai_usage(as_dict(response.get("usage")))}
    latency = _latency(response.get("metrics"))
    if latency is not None:
        completion[LATENCY_KEY] = latency  # the relay takes it off before the client sees the completion
    return completion


def _tool_call(tool: dict) -> dict:
    given = tool.get("input")
    arguments = json.dumps(given) if isinstance(given, dict) and given else "{}"
    return {"id": tool.get("toolUseId"), "type": "function", "function": {"name": tool.get("name"),
                                                                          "arguments": arguments}}


# --- errors ------------------------------------------------------------------------------------------


def http_error(status: int, error_type: str, message: str, *, provider: str, stream: bool, region: str,
               credentials_source: str) -> UpstreamError:
    """An HTTP-level refusal, with AWS's error type, its message, and what the operator can do about it.
    A refusal of the gateway's own credentials tells the caller only that; the rest goes to the log."""
    if error_type in _CREDENTIAL_ERRORS:
        text = f"Upstream provider '{provider}' refused the gateway's AWS credentials ({error_type})."
        logger.warning("Bedrock refused the gateway's AWS credentials", extra={
            "error_type": error_type, "upstream_status": status, "region": region,
            "hint": f"The AWS credentials the gateway signs with {_CREDENTIAL_ERRORS[error_type]}; botocore "
                    f"found them in {credentials_source}."})
    else:
        text = f"Upstream provider '{provider}' returned {status} {error_type or 'error'}: {message or 'no message'}"
        hint = _hint(error_type, message, stream=stream, region=region)
        if hint:
            text = f"{text} {hint}"
    if status < 400:  # never followed: a redirect could point anywhere, the metadata address included
        return UpstreamError(502, text + " (redirect not followed)", kind="redirect_refused", upstream_status=status)
    if error_type in _THROTTLED:
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


def aws_error(raw: bytes, headers: object, secrets: Secrets = ()) -> tuple[str, str]:
    """(error type, message) of an AWS JSON error response: the type from x-amzn-errortype or the body.
    `raw` comes scrubbed (`scrub_bytes`); what JSON decoding reveals is scrubbed again as it is cut."""
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        parsed = None
    parsed = parsed if isinstance(parsed, dict) else {}
    error_type = str(getattr(headers, "get", lambda _: None)("x-amzn-errortype") or parsed.get("__type") or "")
    error_type = error_type.split(":", 1)[0].rsplit("#", 1)[-1]  # "Type:http://..." and "ns#Type" both
    message = parsed.get("message") or parsed.get("Message")
    if isinstance(message, str):
        message = clip(message, 1000, secrets)
    else:
        message = "" if parsed else clip(raw[:1200].decode("utf-8", "replace"), 300, secrets).strip()
    return clip(error_type, 100, secrets), message


# --- I/O -----------------------------------------------------------------------------------------------


async def _open(client: UpstreamClient, route: Route, body: dict, settings: Settings,
                stream: bool) -> tuple[UpstreamResponse, Secrets]:
    """Sign and send: a 2xx response and the secrets it was signed with, or UpstreamError (GatewayError for
    the caller's own mistakes, before any traffic). Expired credentials are refreshed and tried once more."""
    check_model_id(route.model)
    url = converse_url(route.base_url, route.model, stream)
    payload = dumps(converse_request(body, route.model, settings.anthropic_default_max_tokens))
    region = signing_region(settings, route.base_url)
    accept = "application/vnd.amazon.eventstream" if stream else "application/json"
    for attempt in (1, 2):
        credentials = await _credentials(route.provider, region)
        secrets = (credentials.secret_key, credentials.token)
        headers = sign(url, payload, {"content-type": "application/json", "accept": accept}, credentials, region)
        headers["accept-encoding"] = "identity"
        # Already encoded, and sent byte for byte: turning %3A back into ":" would break the signature.
        response = await post(client, url, headers, payload, route.provider)
        if response.status < 300:
            return response, secrets
        try:
            raw = await response.read(transport.MAX_ERROR_BODY)
        except transport.TransportError:
            raw = b""
        finally:
            response.close()
        raw = scrub_bytes(raw, secrets, cut=len(raw) >= transport.MAX_ERROR_BODY)
        error_type, message = aws_error(raw, response.headers, secrets)
        source = CREDENTIALS.source
        if error_type in _CREDENTIAL_ERRORS:
            CREDENTIALS.invalidate()  # the next call resolves the chain again rather than reuse refused keys
            if error_type == "ExpiredTokenException" and attempt == 1:
                continue
        raise http_error(response.status, error_type, message, provider=route.provider,
                         stream=stream, region=region, credentials_source=source)
    raise AssertionError("unreachable")


async def _credentials(provider: str, region: str) -> ReadOnlyCredentials:
    """The credentials to sign with. Why there are none (which may name files, profiles or a process's
    output) is for the operator's log; the caller learns only that the gateway cannot sign."""
    try:
        return await CREDENTIALS.current()
    except CredentialsUnavailable as exc:
        logger.warning("Bedrock calls cannot be signed", extra={
            "error_type": "CredentialsUnavailable", "region": region, "hint": str(exc)})
        raise UpstreamError(502, f"Upstream provider '{provider}' cannot sign requests: the gateway has no usable "
                            "AWS credentials (its log says why).", kind="aws_credentials") from None


async def _read_messages(response: UpstreamResponse, provider: str) -> AsyncIterator[list[EventStreamMessage]]:
    """Event-stream messages as the socket delivers them, a list per read, decoded by botocore's parser."""
    buffer = EventStreamBuffer()
    received = decoded = 0
    body = response.chunks()
    try:
        async for data in body:
            received += len(data)
            buffer.add_data(data)
            messages = list(buffer)
            if messages:
                decoded += sum(m.prelude.total_length for m in messages)
                yield messages
    except transport.TransportError as exc:
        raise broken_read(provider, exc) from None
    except ParserError as exc:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent a broken event stream ({exc}).",
                            kind="stream_error") from None
    finally:
        await body.aclose()  # now, not by the GC's finalizer hook (a loop wake-up per call)
    if received != decoded:
        raise UpstreamError(502, f"Upstream provider '{provider}' ended the stream mid-event.", kind="stream_error")


def _event(message: EventStreamMessage, provider: str, secrets: Secrets = ()) -> tuple[str, dict]:
    """(event type, payload) of one message; an exception or error message raises UpstreamError, its text
    scrubbed of `secrets` before it is parsed and as it is cut."""
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "exception":
        payload = _json_object(scrub_bytes(message.payload, secrets))
        raise stream_exception(provider, str(headers.get(":exception-type") or ""),
                               str(payload.get("message") or ""), secrets)
    if kind == "error":
        raise stream_exception(provider, str(headers.get(":error-code") or ""),
                               str(headers.get(":error-message") or ""), secrets)
    try:
        payload = json.loads(message.payload) if message.payload else {}
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamError(502, f"Upstream provider '{provider}' sent an event that is not a JSON object.",
                            kind="stream_error")
    return str(headers.get(":event-type") or ""), payload


def _json_object(raw: bytes) -> dict:
    try:
        parsed = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _pair(chunk: dict, latency_ms: int | float | None) -> Chunk:
    """The chunk's bytes for the client, and its parsed form; the usage chunk's carries Bedrock's latency."""
    if "usage" in chunk and latency_ms is not None:
        return dumps(chunk), {**chunk, LATENCY_KEY: latency_ms}
    return dumps(chunk), chunk


async def stream(client: UpstreamClient, route: Route, body: dict, settings: Settings
                 ) -> AsyncIterator[list[Chunk]]:
    response, secrets = await _open(client, route, body, settings, stream=True)
    translator = StreamTranslator(route.model, response.headers.get("x-amzn-requestid"))
    try:
        async for messages in _read_messages(response, route.provider):
            batch: list[Chunk] = []
            failure = None
            for message in messages:
                try:
                    chunks = translator.feed(*_event(message, route.provider, secrets))
                except UpstreamError as error:
                    failure = error
                    break
                batch += [_pair(chunk, translator.latency_ms) for chunk in chunks]
            if batch:  # what came before a failure in the same read still reaches the client first
                yield batch
            if failure is not None:
                raise failure
            if translator.complete:
                await response.drain()  # the end of the chunked body, so the connection goes back to the pool
                return
    finally:
        response.close()
    if not translator.stopped:
        raise UpstreamError(502, f"Upstream provider '{route.provider}' ended the stream before messageStop.",
                            kind="stream_error")


async def complete(client: UpstreamClient, route: Route, body: dict, settings: Settings) -> dict:
    response, _ = await _open(client, route, body, settings, stream=False)
    request_id = response.headers.get("x-amzn-requestid")
    raw = await read_body(response, route.provider, MAX_RESPONSE_BYTES)
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(as_dict(parsed.get("output")).get("message"), dict):
        raise UpstreamError(502, f"Upstream provider '{route.provider}' answered with something that is not "
                            "a Converse response.", kind="http_error")
    return completion_from_converse(parsed, route.model, request_id)
