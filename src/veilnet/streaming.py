"""The streaming responses of miner, gateway and confidential proxy, with as little work per chunk as a
stream allows (the SSE framing itself is :mod:`veilnet.protocol.sse`).

:class:`EventStreamResponse` is Starlette's ``StreamingResponse`` without the anyio task group it starts per
response to notice a client that goes away (a measurable share of a relay's CPU): one waiter on ``receive``
cancels the stream the moment the client disconnects, as Starlette does, and the response ends quietly.
Relays read upstream streams by network read, in whole lines (``RelayResponse.blocks(whole_lines=True)``), so
they write (and, when nothing in a block needs a look, inspect) once per read, not once per line.
:class:`SettledResponse` sends a whole answer and does its accounting after, so the accounting does not
delay the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Any

from fastapi.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

__all__ = ["EventStreamResponse", "SettledResponse"]


class EventStreamResponse(StreamingResponse):
    """``on_close``: called once the response is done with, however it ended, even when its body never
    started (an async generator that never started runs none of its ``finally``)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterable[bytes], *, on_close: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        finished = gone = False

        def on_message(waiter: asyncio.Future[Message]) -> None:
            nonlocal gone
            # the request body was read by the route: the next message is the client going away
            if not finished and not waiter.cancelled() and waiter.result().get("type") == "http.disconnect":
                gone = True
                task.cancel()

        waiter = asyncio.ensure_future(receive())
        waiter.add_done_callback(on_message)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # the client left: nothing more to send, and nothing went wrong here
        finally:
            finished = True
            waiter.cancel()
            try:
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                if self._on_close is not None:
                    self._on_close()


class SettledResponse(Response):
    """A whole answer sent first and accounted for after: ``settle()`` runs once the body is handed to the
    server, and also when sending fails (the client left), so accounting is never lost and never delays the
    answer. For checks whose verdict the client does not need from this hop (its own checks cover it)."""

    def __init__(self, content: bytes, settle: Callable[[], Awaitable[None]], *, media_type: str,
                 headers: Mapping[str, str]) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._settle = settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._settle()
