"""The HTTP edge of the miner, the gateway and the confidential proxy: typed errors become their status
and OpenAI's error document (one registry, :mod:`veilnet.protocol.errors`), request bodies are read under a
size limit and parsed in one pass, and unknown routes answer in the same shape."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

import veilnet.confidential.errors  # noqa: F401  (registers the confidential errors' statuses)
from veilnet.errors import InvalidRequest, NotFound, PayloadTooLarge, VeilnetError
from veilnet.protocol.errors import error_document, status_for

__all__ = [
    "EdgeApp",
    "document_json_bodies",
    "error_body",
    "error_response",
    "install_error_handlers",
    "parse_body",
    "read_body",
    "status_for",
]

log = logging.getLogger(__name__)


def error_body(error: VeilnetError) -> dict[str, object]:
    """OpenAI's error document for ``error`` (:mod:`veilnet.protocol.errors`), as a dict."""
    return error_document(error).model_dump()


def error_response(exc: VeilnetError) -> JSONResponse:
    """The response for a typed error: its status, OpenAI's error shape, ``Retry-After`` when it has one."""
    status, _kind = status_for(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if status >= 500:
        log.warning("request failed: %s", exc.message)
    return JSONResponse(error_body(exc), status_code=status, headers=headers)


def internal_error_response() -> JSONResponse:
    return JSONResponse(
        {"error": {"message": "internal error", "type": "server_error", "param": None, "code": "internal_error"}},
        status_code=500,
    )


Handler = Callable[[Request], Awaitable[Response]]


class EdgeApp(FastAPI):
    """FastAPI with a fast lane: ``POST`` requests to a path in ``fast_routes`` go straight to their handler,
    ahead of FastAPI's own entry (its per-request telemetry check), middleware stack, routing, dependency
    solving and exception layers, each of which wraps every message a stream sends: together more than
    half a millisecond of CPU per proxied request. The handlers read and validate their bodies themselves
    (:func:`read_body`, :func:`parse_body`), and their errors become the same responses as
    :func:`install_error_handlers` gives. The app's own routes still describe those paths in the OpenAPI
    document and serve every other method and path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: dict[str, Handler] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.fast_routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        response: Response
        try:
            response = await handler(Request(scope, receive, send))
        except ClientDisconnect:  # gone before its request was read: nobody to answer
            return
        except VeilnetError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("unexpected error")
            response = internal_error_response()
        await response(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes (by its
    Content-Length, or while it arrives): an oversized body is never held in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    return bytes(body)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VeilnetError)
    async def veilnet_error(_: Request, exc: VeilnetError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(ClientDisconnect)
    async def client_left(_: Request, exc: ClientDisconnect) -> Response:
        """The client left (or was cut off by a deadline) before its request arrived: nobody hears this."""
        return Response(status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own answers (no such route, method not allowed) in OpenAI's error shape."""
        if exc.status_code == 404:
            return error_response(NotFound(f"{request.method} {request.url.path} is not a route of this service",
                                           code="route_not_found"))
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = {"error": {"message": str(exc.detail), "type": kind, "param": None,
                          "code": "method_not_allowed" if exc.status_code == 405 else f"http_{exc.status_code}"}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            error_body(InvalidRequest(f"{param or 'request'}: {first.get('msg', 'invalid')}", param=param or None)),
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return internal_error_response()


def parse_body(schema: type[BaseModel], body: bytes) -> Any:
    """Parse a JSON request body into ``schema`` (in one pass, by pydantic's own JSON parser); InvalidRequest
    naming the bad field otherwise."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            raise InvalidRequest(f"body is not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}") from exc
        if not first["loc"] and first["type"] in ("model_type", "model_attributes_type"):
            raise InvalidRequest("body must be a JSON object") from exc
        # a value a union refuses gets one error per member: the deepest one says what is wrong (a content
        # part of an unknown type, not "content is not a string")
        deepest = max(errors, key=lambda error: len(error["loc"]))
        parts = [str(p) for p in deepest["loc"] if not _UNION_MEMBER.match(str(p))]
        # a tagged union's member is named by its tag, which is often its own field's name: said once
        param = ".".join(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1])
        raise InvalidRequest(f"{param or 'body'}: {deepest['msg']}", param=param or None) from exc


# the names pydantic gives a union's members in an error's location ("str", "list[tagged-union[...]]")
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|none|[\w-]+\[.*\])$")


def document_json_bodies(app: FastAPI, bodies: Mapping[str, type[BaseModel]], *, bearer: frozenset[str]) -> None:
    """Declare each ``POST`` route's JSON body (``bodies``: path -> schema) and the bearer-key security of the
    paths in ``bearer`` in the app's OpenAPI document. The routes read the raw body themselves (to check its
    size and the caller's key before parsing), so FastAPI cannot infer these."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        _, defs = models_json_schema([(model, "validation") for model in bodies.values()],
                                     ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(defs.get("$defs", {}))
        components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        for path, model in bodies.items():
            document["paths"][path]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
            }
        for path in bearer:
            for operation in document["paths"][path].values():
                operation["security"] = [{"apiKey": []}]
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
