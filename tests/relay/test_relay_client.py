"""RelayClient against real servers on loopback (each test on asyncio's loop and on uvloop: conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from veilnet.relay import RelayClient, RelayConnectError, RelayError, RelayTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server whose ``handler`` speaks (or breaks) HTTP by hand, once per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    raw = RawServer(handler)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    raw.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield raw
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One request: its request line, headers (lower-case names) and body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, value in (h.split(":", 1) for h in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line.encode(), headers, body


def ok(body: bytes, *extra: str) -> bytes:
    head = "\r\n".join(["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra, "", ""])
    return head.encode() + body


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with its own body, echoed."""
    while True:
        _, _, body = await read_request(reader)
        writer.write(ok(b"echo:" + body))
        await writer.drain()


@contextlib.asynccontextmanager
async def aiohttp_server(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_stream_arrives_as_it_is_sent_and_the_request_as_given() -> None:
    seen: dict[str, object] = {}
    go_on = asyncio.Event()

    async def chat(request: web.Request) -> web.StreamResponse:
        seen.update(body=await request.read(), auth=request.headers.get("Authorization"),
                    path=request.path_qs, method=request.method)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Answer": "yes"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await go_on.wait()  # the client has the first event before the rest exists
        for n in range(50):
            await response.write(b"data: %d\n\n" % n)
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with aiohttp_server(app) as url, RelayClient() as client:
        response = await client.post(f"{url}/v1/chat/completions?x=1", b'{"stream":true}',
                                     {"Authorization": "Bearer k", "Content-Type": "application/json"}, timeout=10)
        assert response.status == 200 and response.headers["x-answer"] == "yes"
        blocks = response.blocks()
        assert await anext(blocks) == b"data: first\n\n"
        go_on.set()
        rest = b"".join([block async for block in blocks])
        response.release()
    assert rest == b"".join(b"data: %d\n\n" % n for n in range(50)) + b"data: [DONE]\n\n"
    assert seen == {"body": b'{"stream":true}', "auth": "Bearer k", "path": "/v1/chat/completions?x=1",
                    "method": "POST"}


async def test_connections_are_reused_unless_an_answer_was_left_unread() -> None:
    async with raw_server(keep_answering) as server, RelayClient() as client:
        for n in range(3):
            async with await client.post(server.url + "/a", b"%d" % n, {}, timeout=5) as response:
                assert await response.read() == b"echo:%d" % n
        assert server.connections == 1
        unread = await client.post(server.url + "/a", b"x", {}, timeout=5)
        unread.release()  # its body was never read: the connection cannot carry another request
        async with await client.post(server.url + "/a", b"y", {}, timeout=5) as response:
            assert await response.read() == b"echo:y"
        assert server.connections == 2


async def test_a_reused_connection_the_server_closed_is_replaced_without_losing_the_request() -> None:
    requests: list[bytes] = []

    async def one_answer_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, _, body = await read_request(reader)
        requests.append(body)
        writer.write(ok(b"fine"))  # says keep-alive, then drops the next request unanswered
        await writer.drain()
        await read_request(reader)

    async with raw_server(one_answer_then_drop) as server, RelayClient() as client:
        for body in (b"1", b"2", b"3"):
            async with await client.post(server.url, body, {}, timeout=5) as response:
                assert await response.read() == b"fine"
    assert requests == [b"1", b"2", b"3"] and server.connections == 3


async def test_idle_connections_are_dropped_after_keepalive_seconds() -> None:
    async with raw_server(keep_answering) as server, RelayClient(keepalive_seconds=0.05) as client:
        async with await client.post(server.url, b"a", {}, timeout=5) as response:
            await response.read()
        await asyncio.sleep(0.1)
        async with await client.post(server.url, b"b", {}, timeout=5) as response:
            assert await response.read() == b"echo:b"
    assert server.connections == 2


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end"),
    (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
])
async def test_every_way_http_ends_a_body(answer: bytes, body: bytes) -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if b"Connection: close" in answer:
            writer.close()
        else:
            await reader.read()  # hold the connection open

    async with raw_server(answer_once) as server, RelayClient() as client:
        async with await client.post(server.url, b"", {}, timeout=5) as response:
            assert await response.read() == body
            assert response.status in (200, 204)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
])
async def test_an_answer_cut_short_is_an_error_not_a_short_body(answer: bytes) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with raw_server(cut) as server, RelayClient() as client:
        response = await client.post(server.url, b"", {}, timeout=5)
        with pytest.raises(RelayError, match="closed before the response ended"):
            await response.read()
        response.release()


async def test_malformed_answers_and_dead_addresses_are_relay_errors() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(garbage) as server, RelayClient() as client:
        with pytest.raises(RelayError, match="malformed HTTP response"):
            await client.post(server.url, b"", {}, timeout=5)
    async with raw_server(garbage) as server:
        dead = server.url
    async with RelayClient() as client:
        with pytest.raises(RelayConnectError, match="cannot connect"):
            await client.post(dead, b"", {}, timeout=5)
        with pytest.raises(ValueError, match="http"):
            await client.post("ftp://127.0.0.1/", b"", {})


async def test_the_deadline_covers_the_whole_answer() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    async with raw_server(stall) as server, RelayClient() as client:
        started = time.monotonic()
        response = await client.post(server.url, b"", {}, timeout=0.3)
        blocks = response.blocks()
        assert await anext(blocks) == b"hello"
        with pytest.raises(TimeoutError, match=r"within 0\.3 s"):
            await anext(blocks)
        assert time.monotonic() - started < 5
        response.release()


async def test_a_slow_reader_pauses_the_server_instead_of_buffering_the_answer() -> None:
    total = 64 * 1024 * 1024
    written = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        block = b"x" * 65536
        while written < total:
            writer.write(block)
            await writer.drain()  # waits while the client does not read
            written += len(block)

    async with raw_server(flood) as server, RelayClient(buffer_bytes=64 * 1024) as client:
        response = await client.post(server.url, b"", {}, timeout=30)
        blocks = response.blocks()
        await anext(blocks)
        await asyncio.sleep(0.5)  # a reader busy elsewhere
        assert written < total // 2, "the client kept reading with nobody taking the data"
        received = 0
        async for block in blocks:
            received += len(block)
        response.release()
    assert written == total


async def test_headers_that_could_split_the_request_are_refused() -> None:
    async with raw_server(keep_answering) as server, RelayClient() as client:
        for headers in ({"X-A": "1\r\nX-Injected: 2"}, {"X-A\r\nX-B": "1"}, {"Content-Length": "0"},
                        {"Transfer-Encoding": "chunked"}, {"Host": "elsewhere"}):
            with pytest.raises(ValueError):
                await client.post(server.url, b"", headers)
        assert server.connections == 0


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting only that server's certificate) for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_verifies_the_server(tmp_path: Path) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=b"secure:" + await request.read())

    server_tls, client_tls = self_signed(tmp_path)
    app = web.Application()
    app.router.add_post("/", hello)
    async with aiohttp_server(app, server_tls) as url:
        async with RelayClient(ssl_context=client_tls) as client:
            async with await client.post(url + "/", b"hi", {}, timeout=5) as response:
                assert await response.read() == b"secure:hi"
        async with RelayClient() as client:  # the system's roots do not know this certificate
            with pytest.raises(RelayConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(url + "/", b"hi", {}, timeout=5)


async def test_a_released_response_cannot_be_read_and_a_closed_client_sends_nothing() -> None:
    async with raw_server(keep_answering) as server:
        client = RelayClient()
        response = await client.post(server.url, b"a", {}, timeout=5)
        await response.read()
        response.release()
        with pytest.raises(RelayError, match="released"):
            await response.read()
        await client.aclose()
        with pytest.raises(RelayError, match="closed"):
            await client.post(server.url, b"b", {}, timeout=5)


async def test_an_ipv6_literal_gets_its_brackets_in_the_host_header() -> None:
    hosts: list[str] = []

    async def note_host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_request(reader)
        hosts.append(headers["host"])
        writer.write(ok(b"v6"))
        await writer.drain()

    try:
        server = await asyncio.start_server(note_host, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    port = server.sockets[0].getsockname()[1]
    try:
        async with RelayClient() as client, await client.post(f"http://[::1]:{port}/x", b"", {}, timeout=5) as response:
            assert await response.read() == b"v6"
    finally:
        server.close()
    assert hosts == [f"[::1]:{port}"]


async def test_whole_line_blocks_hold_back_a_partial_line_until_it_ends() -> None:
    pieces = [b"data: ab", b"c\n\ndata: d", b"ef\n\n", b"data: g\n\nno newline at the end"]

    async def in_pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.02)  # each piece its own read
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(in_pieces) as server, RelayClient() as client:
        async with await client.post(server.url, b"", {}, timeout=5) as response:
            blocks = [block async for block in response.blocks(whole_lines=True)]
    assert b"".join(blocks) == b"".join(pieces)
    assert blocks[-1] == b"no newline at the end"
    # however the pieces were read together, no block ends or starts inside a line
    assert all(block.endswith(b"\n") and block.startswith(b"data: ") for block in blocks[:-1])
    assert len(blocks) >= 2


async def test_a_connection_that_talks_out_of_turn_is_not_reused() -> None:
    async def answer_then_babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(ok(b"nobody asked"))  # an answer to no request
        await writer.drain()
        await reader.read()

    async with raw_server(answer_then_babble) as server, RelayClient() as client:
        async with await client.post(server.url, b"", {}, timeout=5) as response:
            assert await response.read() == b"first"
        await asyncio.sleep(0.2)
        async with await client.post(server.url, b"", {}, timeout=5) as response:
            assert await response.read() == b"first"  # a fresh connection, not the babble
    assert server.connections == 2


async def test_a_server_that_accepts_and_never_answers_misses_the_first_byte_deadline() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with raw_server(mute) as server, RelayClient() as client:
        started = time.monotonic()
        with pytest.raises(RelayTimeout, match=r"no answer from .* within 0\.3 s") as missed:
            await client.post(server.url, b"", {}, timeout=20, first_byte=0.3, idle=5)
        assert missed.value.phase == "first_byte" and isinstance(missed.value, TimeoutError)
        assert time.monotonic() - started < 5  # not the 20 s of the whole answer


async def test_a_body_that_goes_silent_misses_the_idle_deadline_and_a_steady_one_never_does() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, _, body = await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(12 if body == b"steady" else 2):  # a chunk every 0.1 s, for 1.2 s
            writer.write(b"5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        if body == b"steady":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return
        await asyncio.sleep(30)  # then silence

    async with raw_server(trickle) as server, RelayClient() as client:
        response = await client.post(server.url, b"steady", {}, timeout=20, first_byte=5, idle=0.3)
        assert await response.read() == b"hello" * 12  # four times the idle deadline, never silent that long
        response.release()
        started = time.monotonic()
        response = await client.post(server.url, b"silent", {}, timeout=20, first_byte=5, idle=0.3)
        with pytest.raises(RelayTimeout, match=r"sent nothing for 0\.3 s mid-answer") as silent:
            await response.read()
        assert silent.value.phase == "idle"
        assert 0.3 <= time.monotonic() - started < 5
        response.release()
