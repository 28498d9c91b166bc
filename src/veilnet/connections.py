"""Deadlines on every connection a veilnet HTTP server accepts, so that clients which hold connections open
without finishing a request (idle, slow headers, slow bodies: slowloris and its kin) are closed, and those
they hold cost the requests of everyone else nothing.

uvicorn closes a keep-alive connection idle after a response, but nothing else: a connection that sends no
byte, or its headers a byte a minute, or a body that never ends, is held for ever. :func:`guarded_protocol`
gives uvicorn an HTTP protocol (its own httptools one) with three deadlines:

- ``keep_alive_seconds``: a connection that opens, or finishes a response, and sends no byte in this time is
  closed (without a word: it asked nothing).
- ``header_seconds``: a request's headers must all arrive within this time of the connection opening (the
  first request) or of their first byte (later requests on a kept-alive connection).
- ``body_seconds``: a request's body must all arrive within this time of its headers.

A request cut by the header or body deadline is answered ``408`` (OpenAI's error shape, ``Connection:
close``) when nothing was answered yet, and the connection closes; the app reading that body hears the
client left. The close lingers, as nginx's does: the server half-closes, discards what the client still
sends, and closes when the client does or after ``LINGER_SECONDS`` (closing a socket with unread bytes sends
a reset, and a reset can destroy the 408 before the client has read it). Every timer is one ``call_later``
per request, nothing per byte.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from veilnet.errors import RequestTimeout
from veilnet.protocol.errors import error_document
from veilnet.settings import HttpSettings

__all__ = ["LINGER_SECONDS", "ConnectionTimeouts", "guarded_protocol"]

#: How long a connection answered 408 stays half-open, discarding what the client still sends.
LINGER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ConnectionTimeouts:
    """Seconds a client has: to send its first byte (and between requests), its headers, its body."""

    keep_alive_seconds: float = 5.0
    header_seconds: float = 10.0
    body_seconds: float = 60.0

    @classmethod
    def from_settings(cls, http: HttpSettings) -> ConnectionTimeouts:
        return cls(http.keep_alive_seconds, http.header_seconds, http.body_seconds)

    def __post_init__(self) -> None:
        for name in ("keep_alive_seconds", "header_seconds", "body_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")


def _timeout_response(what: str) -> bytes:
    body = json.dumps(error_document(RequestTimeout(f"the connection was closed: {what}")).model_dump()).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header and body deadlines (and keep-alive from the start)."""

    timeouts = ConnectionTimeouts()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._lingering = False

    def _arm(self, seconds: float, what: str, *, body: bool = False) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, what, body)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str, body: bool) -> None:
        """A request's headers or body did not arrive in time. It is answered 408 when nothing answers it yet,
        and the connection closes — except while an earlier (pipelined) request's answer is still being sent:
        that answer finishes, then the connection closes."""
        self._deadline = None
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        if body:  # the cycle is this request's
            assert cycle is not None
            cycle.keep_alive = False
            if cycle.response_started:  # the app is answering: its answer is cut, as the client's body was
                transport.close()
                return
        elif cycle is not None and not cycle.response_complete:  # an earlier request's answer is under way
            cycle.keep_alive = False
            self.flow.pause_reading()
            return
        transport.write(_timeout_response(what))
        self._linger(transport)

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close after the 408 without a reset: the app hears the client left; half-close, discard the client's
        further bytes, close when it does (``eof_received``) or after ``LINGER_SECONDS``."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() says http.disconnect; what it sends is dropped
            cycle.message_event.set()
        if not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._lingering:  # lingering: the connection is answered; what still comes is dropped
            super().data_received(data)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms keep-alive only after a response: a connection that never speaks was held for ever
        self.timeout_keep_alive_task = self.loop.call_later(self.timeouts.keep_alive_seconds,
                                                            self.timeout_keep_alive_handler)
        self._arm(self.timeouts.header_seconds,
                  f"its request headers took more than {self.timeouts.header_seconds:g} s")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a later request on a kept-alive connection: its headers' clock starts
            self._arm(self.timeouts.header_seconds,
                      f"its request headers took more than {self.timeouts.header_seconds:g} s")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.timeouts.body_seconds, f"its request body took more than {self.timeouts.body_seconds:g} s",
                  body=True)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()


def guarded_protocol(timeouts: ConnectionTimeouts) -> type[HttpToolsProtocol]:
    """uvicorn's ``http`` protocol class with ``timeouts`` (pass it as ``uvicorn.Config(http=...)``, together
    with ``timeout_keep_alive=timeouts.keep_alive_seconds``)."""
    return type("GuardedHttpProtocol", (_GuardedProtocol,), {"timeouts": timeouts})
