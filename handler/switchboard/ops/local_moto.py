"""The embedded AWS emulation's process: moto's server, gone as soon as the gateway that started it is.

uvicorn ends a server stopped by a signal by re-raising that signal, so the gateway's own clean-up may
never run; the child therefore watches its parent instead of waiting to be told.
Run as `python -m switchboard.ops.local_moto PARENT_PID HOST PORT`.

Requests are served one at a time. DynamoDB applies each conditional write atomically, and the budgets count
on it (a reservation is an `ADD` on the condition that the line is under its limit); moto's threaded server
does not: two reservations that interleave inside it can both pass the condition and one `ADD` can be lost,
so concurrent calls under a shared budget would overspend locally where they cannot on AWS.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


def one_at_a_time(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    """A WSGI app that handles one request at a time (its whole body produced under the lock)."""
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return serve


def main(argv: list[str]) -> int:
    parent, host, port = int(argv[0]), argv[1], int(argv[2])
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(host, port, one_at_a_time(DomainDispatcherApplication(create_backend_app)), True,
                         request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while os.getppid() == parent:
            time.sleep(0.5)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
