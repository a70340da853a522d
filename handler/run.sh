#!/bin/bash
# Lambda Web Adapter entry (Handler: run.sh). The adapter waits for GET /health on AWS_LWA_PORT, then
# forwards each invocation to uvicorn and streams the response back through the function URL.
# The dependency layer lands in /opt/python; the runtime's own boto3 is under $LAMBDA_RUNTIME_DIR.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-.}:/opt/python:${LAMBDA_RUNTIME_DIR:-}${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m uvicorn switchboard.asgi:app \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-8000}" \
    --no-access-log --log-level warning --timeout-graceful-shutdown 2
