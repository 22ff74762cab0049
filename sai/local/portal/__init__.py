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


def add_routes(app: web.Application) -> None:
    async def to_ui(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/ui", to_ui)
    app.router.add_get("/ui/", index)
    app.router.add_static("/ui/static/", STATIC)
