"""Every veilnet HTTP server closes connections that hold it without finishing a request — idle ones, slow
headers (slowloris), slow bodies — after the deadlines of the settings' ``http`` section, and while hundreds
are held a normal request is served. Real sockets over loopback, the real serving path (``veilnet.serving``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fastapi import Request
from fastapi.responses import Response

from tests.conftest import free_port
from veilnet.connections import ConnectionTimeouts
from veilnet.edge import EdgeApp, install_error_handlers, read_body
from veilnet.serving import ServiceStop, serve

TIMEOUTS = ConnectionTimeouts(keep_alive_seconds=3.0, header_seconds=4.0, body_seconds=4.0)
SLOW = 80  # connections of each kind: silent, slow headers, slow body (240 in all)


def echo_app() -> EdgeApp:
    app = EdgeApp()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await read_body(request, 1 << 20), media_type="application/octet-stream")

    @app.post("/refuse")
    async def refuse() -> Response:  # answers before (and without) reading the body
        return Response(b"no", status_code=401)

    return app


async def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    for _ in range(600):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    pytest.fail("the server did not come up")


@contextlib.asynccontextmanager
async def served(timeouts: ConnectionTimeouts) -> AsyncIterator[int]:
    port = free_port()
    stop = ServiceStop(None)
    task = asyncio.create_task(serve(echo_app(), host="127.0.0.1", port=port, stop=stop, timeouts=timeouts,
                                     timeout_graceful_shutdown=1))
    await wait_listening(port)
    try:
        yield port
    finally:
        stop.on_signal(signal.SIGTERM)
        await asyncio.wait_for(task, 10)


class Held:
    """One connection a client holds open; ``dripping`` sends one more byte every half second."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drip: bytes) -> None:
        self.reader, self.writer, self.drip = reader, writer, drip
        self.answer: bytes | None = None  # what the server sent before it closed
        self.closed_after: float | None = None

    @classmethod
    async def open(cls, port: int, start: bytes, drip: bytes) -> Held:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if start:
            writer.write(start)
        return cls(reader, writer, drip)

    async def hold(self, started: float) -> None:
        dripper = asyncio.create_task(self._dripping())
        try:
            self.answer = await self.reader.read()  # until the server closes
            self.closed_after = time.monotonic() - started
        finally:
            dripper.cancel()
            self.writer.close()

    async def _dripping(self) -> None:
        with contextlib.suppress(OSError):
            for byte in self.drip:
                await asyncio.sleep(0.5)
                self.writer.write(bytes([byte]))
                await self.writer.drain()


SLOW_HEADERS = (b"POST /echo HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 1000)
SLOW_BODY = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc", b"d" * 997)


class Errors(logging.Handler):
    """What the server logs at ERROR (uvicorn logs an app's exceptions there, with their traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_held_connections_are_closed_and_do_not_stop_normal_requests() -> None:
    errors = Errors()
    logging.getLogger("uvicorn.error").addHandler(errors)
    try:
        await held_connections()
    finally:
        logging.getLogger("uvicorn.error").removeHandler(errors)
    assert [r.getMessage() for r in errors.records] == []


async def held_connections() -> None:
    async with served(TIMEOUTS) as port:
        started = time.monotonic()
        kinds = {"silent": (b"", b""), "slow headers": SLOW_HEADERS, "slow body": SLOW_BODY}
        held = {kind: [await Held.open(port, start, drip) for _ in range(SLOW)] for kind, (start, drip) in kinds.items()}
        holders = asyncio.gather(*(h.hold(started) for group in held.values() for h in group))
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as http:
            sent = time.monotonic()
            async with http.post(f"http://127.0.0.1:{port}/echo", data=b"hello",
                                 timeout=aiohttp.ClientTimeout(total=30)) as response:
                assert response.status == 200
                assert await response.read() == b"hello"
            served_after = time.monotonic() - sent
        # served while every held connection was still open (the first deadline is 3 s after they opened)
        still_open = sum(h.closed_after is None for group in held.values() for h in group)
        assert still_open == 3 * SLOW
        await asyncio.wait_for(holders, 30)
        print(f"\n{3 * SLOW} held connections: a normal request served in {served_after * 1000:.0f} ms")
        for h in held["silent"]:  # it asked nothing, it is told nothing
            assert h.answer == b""
            assert h.closed_after is not None and h.closed_after >= TIMEOUTS.keep_alive_seconds - 0.1
        for kind, what in (("slow headers", b"request headers took more than 4 s"),
                           ("slow body", b"request body took more than 4 s")):
            for h in held[kind]:
                assert h.answer is not None and h.answer.startswith(b"HTTP/1.1 408 "), (kind, h.answer)
                document = json.loads(h.answer.partition(b"\r\n\r\n")[2])
                assert document["error"]["code"] == "request_timeout"
                assert what in document["error"]["message"].encode()
                # the drip never finishes in time: they were cut by the deadline, not by finishing
                assert h.closed_after is not None and h.closed_after >= TIMEOUTS.header_seconds - 0.1
        slowest = max(h.closed_after or 0.0 for group in held.values() for h in group)
        print(f"the last held connection was closed {slowest:.1f} s after it opened")


async def test_a_kept_alive_connection_gets_the_header_deadline_for_its_next_request() -> None:
    async with served(ConnectionTimeouts(keep_alive_seconds=2.0, header_seconds=2.0, body_seconds=2.0)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        first = await reader.readuntil(b"hi")
        assert first.startswith(b"HTTP/1.1 200 ")
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\n")  # the next request's headers never finish
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 20)
        assert rest.startswith(b"HTTP/1.1 408 ") and b"request headers took more than 2 s" in rest
        assert time.monotonic() - started >= 1.9
        writer.close()


async def test_a_body_cut_off_after_its_request_was_answered_gets_no_second_answer() -> None:
    async with served(ConnectionTimeouts(keep_alive_seconds=2.0, header_seconds=2.0, body_seconds=1.0)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        answer = await asyncio.wait_for(reader.read(), 20)  # until the server closes
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401 ") and answer.count(b"HTTP/1.1 ") == 1, answer


async def test_a_client_still_sending_reads_its_408_before_the_close() -> None:
    """A client that keeps sending header bytes past the deadline reads the whole 408, then the close: the
    server half-closes and lingers, where closing with its bytes unread would reset the connection (and a
    reset can destroy the 408 before the client reads it)."""
    async with served(ConnectionTimeouts(keep_alive_seconds=2.0, header_seconds=1.0, body_seconds=1.0)) as port:
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(SLOW_HEADERS[0])

            async def flood(out: asyncio.StreamWriter = writer) -> None:
                with contextlib.suppress(OSError):
                    while True:
                        out.write(b"a" * 64)
                        await out.drain()
                        await asyncio.sleep(0)

            flooding = asyncio.create_task(flood())
            try:
                answer = await asyncio.wait_for(reader.read(), 20)  # until the server closes: no reset
            finally:
                flooding.cancel()
                writer.close()
            assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b"}"), answer


async def test_the_settings_reach_a_service_started_from_the_command_line(tmp_path: Path) -> None:
    """``veilnet chain serve`` (a devnet service) with VEILNET_HTTP__HEADER_SECONDS=1: slow headers get 408."""
    port = free_port()
    env = {**os.environ, "VEILNET_HTTP__HEADER_SECONDS": "1", "VEILNET_HTTP__KEEP_ALIVE_SECONDS": "1",
           "VEILNET_DATA_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "veilnet", "chain", "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)  # noqa: ASYNC220
    try:
        await wait_listening(port, proc)
        held = await Held.open(port, SLOW_HEADERS[0], SLOW_HEADERS[1][:40])
        started = time.monotonic()
        await asyncio.wait_for(held.hold(started), 20)
        assert held.answer is not None and held.answer.startswith(b"HTTP/1.1 408 ")
        assert b"request headers took more than 1 s" in held.answer
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert b"Traceback" not in stderr, stderr.decode()


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_deadlines_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        ConnectionTimeouts(header_seconds=seconds)
