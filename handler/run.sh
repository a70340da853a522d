#!/bin/bash
# Lambda Web Adapter entry (Handler: run.sh). The adapter waits for GET /health on AWS_LWA_PORT, then
# forwards each invocation to the gateway and streams the response back through the function URL.
# The dependency layer lands in /opt/python; the runtime's own boto3 is under $LAMBDA_RUNTIME_DIR.
# switchboard.http.serving runs uvicorn (with uvloop) as a library: the request-head cap holds here too.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-.}:/opt/python:${LAMBDA_RUNTIME_DIR:-}${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m switchboard.http.serving --host 127.0.0.1 --port "${AWS_LWA_PORT:-8000}"
