"""An OpenAI Chat Completions request -> a Converse / ConverseStream call: its URL and its body. Pure: no I/O.

Bedrock's quirks: the model id URL-encoded in the path, conversations that must open with a user turn and
alternate, blank text refused, and a tool config required whenever the history holds tool blocks.

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
passes it through unchanged is not verified against AWS). The rules are the Anthropic adapter's, shared
with it (`providers/_translate.py`): a client's max tokens (inferenceConfig.maxTokens) is kept and the
budget capped at half of it (under 1024 thinking stays off); with none, maxTokens is
SWITCHBOARD_ANTHROPIC_MAX_TOKENS plus the budget; temperature only at exactly 1, topP only from 0.95; off
with a forced tool, in a tool-use turn in progress and after a prefill. gpt-oss: `{"reasoning_effort":
...}`; Nova 2: `{"reasoningConfig": {"type": "enabled", "maxReasoningEffort": ...}}`. Any other model
(DeepSeek R1 always reasons; Llama, Mistral, Nova 1 never do) gets nothing.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from switchboard.providers._translate import (
    EMPTY_SCHEMA,
    NO_THINKING,
    as_dict,
    base64_data_url,
    capped_temperature,
    claude_thinking,
    client_max_tokens,
    conversation,
    drop_sampling_thinking_refuses,
    function_tools,
    image_url_of,
    requested_effort,
    stop_sequences,
    text_of,
    thinking_allowed,
    tool_calls_of,
    user_parts,
)
from switchboard.providers.bedrock.config import DEFAULT_MAX_TOKENS
from switchboard.wire.chat import is_number
from switchboard.wire.errors import GatewayError

# Converse refuses a conversation that opens with the assistant, and ElevenLabs agents open with their greeting.
CONVERSATION_START = "(conversation start)"
EMPTY_TOOL_RESULT = "(no output)"  # Converse refuses blank text, and a tool may well return nothing
IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
# gpt-oss and Nova 2 take low, medium and high: the efforts either side fold onto the nearest.
FOLDED_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
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
    return f"{base_url}/model/{quote(model, safe='-_.~')}/{operation}"


# --- the body: OpenAI chat.completions -> Converse ----------------------------------------------------


def converse_request(body: dict, model: str = "", default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
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
    for role, message in conversation(messages):
        if role == "system":
            text = text_of(message.get("content"))
            if text.strip():
                system.append({"text": text})
        elif role == "user":
            _append(out, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            _append(out, "assistant", _assistant_blocks(message))
        else:
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
    for kind, value in user_parts(content if isinstance(content, list) else [], "Bedrock"):
        if kind == "image_url":
            blocks.append(image_block(value))
        elif isinstance(value, str) and value.strip():
            blocks.append({"text": value})
    return blocks


def image_block(image_url: object) -> dict:
    """An OpenAI image_url part -> a Converse image block. Converse takes bytes (or S3), never a web URL."""
    url = image_url_of(image_url)
    if not isinstance(url, str) or not url.startswith("data:image/"):
        raise GatewayError(400, "Bedrock models take images as data: URLs ('data:image/png;base64,...') only.",
                           param="messages", code="invalid_image")
    inline = base64_data_url(url)
    image_format = inline[0][len("image/"):] if inline else ""
    image_format = "jpeg" if image_format == "jpg" else image_format
    if inline is None or image_format not in IMAGE_FORMATS:
        raise GatewayError(400, "An image data: URL must be base64 PNG, JPEG, GIF or WebP.", param="messages",
                           code="invalid_image")
    return {"image": {"format": image_format, "source": {"bytes": inline[1]}}}  # blobs travel base64 in JSON


def _assistant_blocks(message: dict) -> list[dict]:
    blocks: list[dict] = []
    text = text_of(message.get("content"))
    if text.strip():
        blocks.append({"text": text})
    blocks += [{"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}}
               for call_id, name, arguments in tool_calls_of(message)]
    return blocks


def _tool_result(message: dict) -> dict:
    text = text_of(message.get("content"))
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
        specs += [{"toolSpec": {"name": name, "inputSchema": {"json": EMPTY_SCHEMA}}}
                  for name in sorted(history - declared)]
        return {"tools": specs} if specs else None
    config: dict = {"tools": specs}
    choice = _tool_choice(tool_choice)
    if choice:
        config["toolChoice"] = choice
    return config


def _tool_specs(tools: object) -> list[dict]:
    specs = []
    for function in function_tools(tools):
        spec: dict = {"name": function["name"], "inputSchema": {"json": function.get("parameters") or EMPTY_SCHEMA}}
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
    max_tokens = client_max_tokens(body)
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    temperature = capped_temperature(body)
    if temperature is not None:
        config["temperature"] = temperature
    if is_number(body.get("top_p")):
        config["topP"] = float(body["top_p"])
    sequences = stop_sequences(body.get("stop"))
    if sequences:
        config["stopSequences"] = sequences
    return config


# --- reasoning: OpenAI reasoning_effort -> additionalModelRequestFields -------------------------------


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


def _claude_thinking(payload: dict, inference: dict, base_model: str, effort: str, default_max_tokens: int) -> dict:
    choice = as_dict(payload.get("toolConfig")).get("toolChoice")
    forced_tool = isinstance(choice, dict) and ("any" in choice or "tool" in choice)
    if effort in NO_THINKING or not thinking_allowed(payload["messages"], forced_tool=forced_tool,
                                                     calls_tool=_is_tool_use, answers_tool=_is_tool_result):
        return {}
    thinking = claude_thinking(base_model, effort, inference.get("maxTokens"), default_max_tokens)
    if thinking is None:
        return {}
    fields, inference["maxTokens"] = thinking
    drop_sampling_thinking_refuses(inference, "temperature", "topP")
    return fields


def _is_tool_use(block: dict) -> bool:
    return "toolUse" in block


def _is_tool_result(block: dict) -> bool:
    return "toolResult" in block
