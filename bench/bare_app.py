"""The cold-start baseline: the simplest FastAPI proxy of the simulated upstream, under uvicorn.

`GET /health`, and `POST /v1/chat/completions` relayed to `$OPENAI_BASE_URL/chat/completions` with
`$OPENAI_API_KEY`: one aiohttp ClientSession made in the lifespan, the request body sent as it came, the
upstream's body chunks streamed back as they arrive (`StreamingResponse`). No auth, routing, records or
error mapping: what a proxy costs to start when it does nothing else.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

UPSTREAM = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8100/v1").rstrip("/") + "/chat/completions"
UPSTREAM_HEADERS = {"content-type": "application/json",
                    "authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.session = aiohttp.ClientSession()
    yield
    await app.state.session.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> StreamingResponse:
    upstream = await app.state.session.post(UPSTREAM, data=await request.body(), headers=UPSTREAM_HEADERS)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()

    return StreamingResponse(relay(), status_code=upstream.status,
                             media_type=upstream.headers.get("content-type", "text/event-stream"))
