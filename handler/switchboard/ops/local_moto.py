"""The embedded AWS emulation's process: moto's server, gone as soon as the gateway that started it is.

uvicorn ends a server stopped by a signal by re-raising that signal, so the gateway's own clean-up may
never run; the child therefore watches its parent instead of waiting to be told.
Run as `python -m switchboard.ops.local_moto PARENT_PID HOST PORT`.
"""

from __future__ import annotations

import logging
import os
import sys
import time


def main(argv: list[str]) -> int:
    parent, host, port = int(argv[0]), argv[1], int(argv[2])
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        while os.getppid() == parent:
            time.sleep(0.5)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
