"""The portal: `GET /ui/`, one page of plain HTML, CSS and JS (no build step) that lists the
functions (replicas, invocations, a latency sparkline from /metrics) and lets a person try each
one: an image for image-classify, a text for the text functions, raw JSON for any.

The page calls the gateway's own API from the browser; when basic auth is on it asks for the
user and password once (`sai up` says where they are) and keeps them in the tab's sessionStorage.
The page itself carries no data, so it is served without auth.
"""

from __future__ import annotations

import pathlib

from aiohttp import web

STATIC = pathlib.Path(__file__).parent / "static"

# The page never runs in a frame (clickjacking of its try-it panel) and loads only its own files:
# no inline script or style, images from itself or the photo a person chose (blob:).
HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/ui" or request.path.startswith("/ui/"):
        response.headers.update(HEADERS)


def add_routes(app: web.Application) -> None:
    async def to_ui(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/ui", to_ui)
    app.router.add_get("/ui/", index)
    app.router.add_static("/ui/static/", STATIC)
    app.on_response_prepare.append(_security_headers)
