"""`switchboard.asgi:app`, the app uvicorn serves under the Lambda Web Adapter (see run.sh)."""

from switchboard.http.app import create_app

app = create_app()
