"""The client-facing APIs: each request parsed at the door into the internal chat shape, each answer framed
at the exit in the API it came in on.

`FORMATS` is the one table the app and the gateway dispatch on; a new wire format is one module under
formats/ and one line in it. A format's `name` is what the call record keeps as `api`.
"""

from switchboard.formats.base import Format
from switchboard.formats.chat_completions import ChatFramer, chat_body_from_chat_completions
from switchboard.formats.responses.request import chat_body_from_responses
from switchboard.formats.responses.stream import ResponsesFramer

FORMATS = (
    Format("chat", frozenset({"/v1/chat/completions", "/chat/completions"}), chat_body_from_chat_completions,
           ChatFramer.for_call),
    Format("responses", frozenset({"/v1/responses", "/responses"}), chat_body_from_responses,
           ResponsesFramer.for_call),
)
FORMAT_BY_PATH = {path: wire_format for wire_format in FORMATS for path in wire_format.paths}
FORMAT_BY_NAME = {wire_format.name: wire_format for wire_format in FORMATS}
