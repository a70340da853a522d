"""Errors at the HTTP edge: a bug of ours becomes a logged 500 with OpenAI's error body, never a traceback."""

from __future__ import annotations

from switchboard.observability import logger
from switchboard.wire.asgi import Reply
from switchboard.wire.errors import error_body
from switchboard.wire.json import dumps


def unexpected_error_reply(exc: Exception) -> Reply:
    """The 500 for a bug of ours: logged with its traceback, and an OpenAI error body that says only that."""
    logger.exception("unexpected error", extra={"error_type": type(exc).__name__})
    return Reply(dumps(error_body("The gateway hit an unexpected error; it has been logged.", "server_error",
                                  code="internal_error")), 500)
