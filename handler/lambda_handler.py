"""Mangum entry: the buffered path for API Gateway and function URL events, `sam local invoke`, and
the tests that drive `events/*.json`. It cannot stream: a streamed chat comes back whole, still as
correct SSE. The deployed function streams through the Lambda Web Adapter and `run.sh` instead.
"""

import os

from mangum import Mangum

from switchboard.http.app import create_app

app = create_app()
# Lifespan off: Mangum would run start-up and shut-down around every event, closing the upstream client.
# The gateway is built from the environment on the first event instead, and kept for the warm ones.
# Behind an API Gateway stage other than $default, set SWITCHBOARD_BASE_PATH to the stage ("/prod").
handler = Mangum(app, lifespan="off", api_gateway_base_path=os.environ.get("SWITCHBOARD_BASE_PATH", "/"))
