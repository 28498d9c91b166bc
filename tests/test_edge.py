"""The HTTP error edge over loopback: EdgeApp's fast routes answer like FastAPI's (typed errors in OpenAI's shape,
Retry-After, a JSON 500 without a traceback), skip the app's whole middleware stack, and pass everything
else on to the app."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.conftest import serve_asgi
from veilnet.edge import EdgeApp, install_error_handlers, read_body
from veilnet.errors import RateLimited


class Seen:
    """A user middleware that notes each request it sees."""

    def __init__(self, app: ASGIApp, paths: list[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


def app(seen: list[str]) -> EdgeApp:
    api = EdgeApp()
    install_error_handlers(api)

    async def fast(request: Request) -> Response:
        body = await read_body(request, 16)
        if body == b"limit":
            raise RateLimited("slow down", retry_after=2.4)
        if body == b"bug":
            raise RuntimeError("a bug with a secret in its message")
        return Response(b"fast:" + body)

    @api.post("/fast")
    async def routed(request: Request) -> Response:  # what the fast route takes over
        return Response(b"routed")

    @api.get("/fast")
    async def get_fast() -> Response:
        return Response(b"get")

    @api.post("/other")
    async def other(request: Request) -> Response:
        raise RateLimited("slow down", retry_after=2.4)

    api.add_middleware(Seen, paths=seen)
    api.fast_routes["/fast"] = fast
    return api


async def test_fast_lane_answers_and_renders_errors_like_the_app(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    async with serve_asgi(app(seen), lifespan="off") as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.post("/fast", content=b"hi")).content == b"fast:hi"
        limited, routed_limited = await client.post("/fast", content=b"limit"), await client.post("/other")
        assert limited.status_code == routed_limited.status_code == 429
        assert limited.json() == routed_limited.json()
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert limited.headers["retry-after"] == routed_limited.headers["retry-after"] == "2"
        with caplog.at_level(logging.ERROR, logger="veilnet.edge"):
            bug = await client.post("/fast", content=b"bug")
        assert bug.status_code == 500
        assert bug.json()["error"] == {"message": "internal error", "type": "server_error", "param": None,
                                       "code": "internal_error"}
        assert "secret" not in bug.text and "unexpected error" in caplog.text
        too_large = await client.post("/fast", content=b"x" * 17)
        assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"
        assert seen == ["POST /other"]  # the fast route never went through the app's middleware
        assert (await client.get("/fast")).content == b"get"  # other methods go on to the app
        assert (await client.post("/fast/")).status_code in (307, 404)  # and other paths
        assert seen == ["POST /other", "GET /fast", "POST /fast/"]
