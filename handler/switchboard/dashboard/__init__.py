"""The operator's page at GET /dashboard: static files from this package, nothing from another host.

The page holds no secret and sets no cookie; it asks for an admin key and sends it as a bearer token to
the admin API, so there is nothing for another site to forge (no CSRF). The Content-Security-Policy lets
it run only its own scripts and talk only to its own origin.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

HERE = Path(__file__).resolve().parent
PAGE = "index.html"
# Exactly what is served, by name: nothing else in the package (or outside it) is reachable.
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "vendor/chart.umd.min.js": "text/javascript; charset=utf-8",
}
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def install_dashboard(app: FastAPI) -> None:
    """Add the page and its assets to `app`. The page is served at /dashboard with relative links, so it
    works wherever the gateway is mounted (a function URL, or an API Gateway stage prefix)."""

    @app.get("/dashboard", include_in_schema=False, response_model=None)
    async def dashboard() -> Response:
        return _file(PAGE, "text/html; charset=utf-8", cache="no-store")

    @app.get("/dashboard/", include_in_schema=False, response_model=None)
    async def dashboard_slash() -> Response:
        return RedirectResponse("../dashboard", status_code=308, headers=SECURITY_HEADERS)

    @app.get("/dashboard/{name:path}", include_in_schema=False, response_model=None)
    async def dashboard_asset(request: Request) -> Response:
        name = request.path_params["name"]  # untyped: a typed parameter would load pydantic.v1
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404)
        cache = "public, max-age=3600" if name.startswith("vendor/") else "no-cache"
        return _file(name, media_type, cache=cache)


def _file(name: str, media_type: str, *, cache: str) -> Response:
    return Response(_read(name), media_type=media_type, headers={**SECURITY_HEADERS, "cache-control": cache})


@lru_cache(maxsize=len(ASSETS) + 1)
def _read(name: str) -> bytes:
    return (HERE / name).read_bytes()
