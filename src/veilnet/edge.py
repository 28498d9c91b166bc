"""The HTTP error edge of the miner and the gateway: veilnet errors -> status and an OpenAI-shaped body."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.types import Receive, Scope, Send

from veilnet.confidential.errors import (
    AttestationFailed,
    DecryptionFailed,
    PrivacyRestricted,
    ReceiptInvalid,
    ResponseTampered,
)
from veilnet.errors import (
    AuthenticationError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    StoreError,
    UpstreamError,
    UpstreamTimeout,
    VeilnetError,
)

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

_STATUS: list[tuple[type[VeilnetError], int, str]] = [
    (PayloadTooLarge, 413, "invalid_request_error"),
    (InvalidRequest, 400, "invalid_request_error"),
    (AuthenticationError, 401, "authentication_error"),
    (PermissionDenied, 403, "permission_error"),
    (PaymentRequired, 402, "insufficient_credits"),
    (NotFound, 404, "not_found_error"),
    (RateLimited, 429, "rate_limit_error"),
    (Overloaded, 503, "overloaded_error"),
    (RequestTimeout, 408, "timeout_error"),
    (UpstreamTimeout, 504, "upstream_error"),
    (UpstreamError, 502, "upstream_error"),
    (StoreError, 503, "service_unavailable"),
    (DecryptionFailed, 400, "invalid_request_error"),
    (PrivacyRestricted, 404, "not_found_error"),
    (AttestationFailed, 502, "upstream_error"),
    (ResponseTampered, 502, "upstream_error"),
    (ReceiptInvalid, 502, "upstream_error"),
]


def status_for(error: VeilnetError) -> tuple[int, str]:
    for cls, status, kind in _STATUS:
        if isinstance(error, cls):
            return status, kind
    return 500, "server_error"


def error_body(error: VeilnetError) -> dict[str, object]:
    _, kind = status_for(error)
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": getattr(error, "param", None),
            "code": error.code,
        }
    }


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
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidRequest(f"body is not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}") from exc
        if not first["loc"] and first["type"] in ("model_type", "model_attributes_type"):
            raise InvalidRequest("body must be a JSON object") from exc
        param = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{param or 'body'}: {first['msg']}", param=param or None) from exc


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
