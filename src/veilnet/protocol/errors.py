"""veilnet's errors on the wire: OpenAI's error document, and the one registry between error classes, their
HTTP statuses and their codes.

The edge of every service (:mod:`veilnet.edge`) answers a raised error with :func:`status_for` and
:func:`error_document`; every client of a veilnet service (the confidential client and proxy, the gateway
reading a miner's refusal) turns the status, the document and ``Retry-After`` back into the same error with
:func:`error_from_answer`: its class, code, message, parameter and Retry-After kept. One table serves both
directions, so they cannot disagree. Packages with errors of their own register them beside their classes
(:mod:`veilnet.confidential.errors` does).

Only pydantic and veilnet's error tree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

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
    "ErrorDetail",
    "ErrorDocument",
    "WireError",
    "error_document",
    "error_from_answer",
    "register",
    "retry_after_seconds",
    "status_for",
]


class ErrorDetail(BaseModel):
    """OpenAI's error object. Read leniently (unknown fields ignored): it comes from other parties too."""

    model_config = ConfigDict(extra="ignore")

    message: str
    type: str = "server_error"
    param: str | None = None
    code: str | None = None


class ErrorDocument(BaseModel):
    """``{"error": {...}}``: the body of every error answer, and the in-band error event of a stream."""

    model_config = ConfigDict(extra="ignore")

    error: ErrorDetail


@dataclass(frozen=True, slots=True)
class WireError:
    """How one error class travels: its HTTP status and OpenAI error type."""

    error: type[VeilnetError]
    status: int
    type: str


_BY_CLASS: dict[type[VeilnetError], WireError] = {}
_BY_CODE: dict[str, type[VeilnetError]] = {}
_BY_STATUS: dict[int, type[VeilnetError]] = {}
_SERVER_ERROR = WireError(VeilnetError, 500, "server_error")


def register(error: type[VeilnetError], status: int, kind: str, *, default_for_status: bool = False,
             codes: Iterable[str] = ()) -> None:
    """Declare that ``error`` (and its subclasses, unless registered themselves) is answered with ``status``
    and OpenAI type ``kind``. ``codes``: the other codes instances of it carry (each reads back as it).
    ``default_for_status``: an answer with this status whose code is unknown reads back as this class."""
    _BY_CLASS[error] = WireError(error, status, kind)
    for code in (error.code, *codes):
        _BY_CODE[code] = error
    if default_for_status or status not in _BY_STATUS:
        _BY_STATUS[status] = error


register(InvalidRequest, 400, "invalid_request_error", default_for_status=True)
register(PayloadTooLarge, 413, "invalid_request_error")
register(AuthenticationError, 401, "authentication_error")
register(PaymentRequired, 402, "insufficient_credits")
register(PermissionDenied, 403, "permission_error")
register(NotFound, 404, "not_found_error", default_for_status=True)
register(RequestTimeout, 408, "timeout_error")
register(RateLimited, 429, "rate_limit_error")
register(UpstreamError, 502, "upstream_error")
register(UpstreamTimeout, 504, "upstream_error")
register(Overloaded, 503, "overloaded_error", default_for_status=True)
register(StoreError, 503, "service_unavailable")


def _wire(error: VeilnetError) -> WireError:
    for cls in type(error).__mro__:
        wire = _BY_CLASS.get(cls)  # type: ignore[arg-type]
        if wire is not None:
            return wire
    return _SERVER_ERROR


def status_for(error: VeilnetError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of ``error`` (its nearest registered class; 500 otherwise)."""
    wire = _wire(error)
    return wire.status, wire.type


def error_document(error: VeilnetError) -> ErrorDocument:
    return ErrorDocument(error=ErrorDetail(message=error.message, type=_wire(error).type,
                                           param=getattr(error, "param", None), code=error.code))


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (HTTP dates and garbage are ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None


def error_from_answer(status: int, body: bytes, *, retry_after: str | None = None,
                      default_message: str | None = None) -> VeilnetError:
    """The error an answer with ``status`` (>= 400), OpenAI-shaped ``body`` and ``Retry-After`` stands for:
    the class its code names, else the class its status reads back as (502 for other 5xx, 400 for other
    4xx), with the code, message, parameter and Retry-After kept."""
    try:
        detail: ErrorDetail | None = ErrorDocument.model_validate(json.loads(body)).error
    except (ValueError, ValidationError):  # not JSON, or not an error document
        detail = None
    message = detail.message if detail is not None else (default_message or f"answered HTTP {status}")
    code = detail.code if detail is not None else None
    cls = _BY_CODE.get(code) if code is not None else None
    if cls is None or _BY_CLASS[cls].status != status:
        cls = _BY_STATUS.get(status) or (UpstreamError if status >= 500 else InvalidRequest)
    return cls.from_wire(message, code=code, param=detail.param if detail is not None else None,
                         retry_after=retry_after_seconds(retry_after))
