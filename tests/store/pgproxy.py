"""A TCP proxy in front of the test PostgreSQL that a test steers, to inject the faults a real network and a real
server produce: the server going away (connections reset, new ones refused), the server hanging (nothing
forwarded either way, connections held open), and a commit whose answer is lost (the COMMIT reaches the server
and is carried out, the client's connection then breaks before the answer arrives).

It speaks just enough of the PostgreSQL wire protocol to find message boundaries: it answers SSL and GSS
encryption requests itself with "no" (so the conversation stays readable) and spots simple-protocol ``COMMIT``
queries, which is how asyncpg commits a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = ["PgProxy", "pg_proxy"]

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    drop_answer: bool = False  # the client sent an armed COMMIT: swallow the answer, then break the link
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()


class PgProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self.port = 0
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.commits_to_drop = 0
        self.commits_seen = 0
        self.answers_dropped = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, url: str) -> str:
        """``url`` (a PostgreSQL URL) pointed at this proxy."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    async def stop(self) -> None:
        """The server goes away: open connections are reset, new ones refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for link in list(self._links):
            link.abort()

    async def restart(self) -> None:
        """The server is back, on the same port."""
        await self.start()

    def hang(self) -> None:
        """The server stops answering: nothing is forwarded either way; connections stay open."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def drop_next_commit_answers(self, count: int = 1) -> None:
        """The next ``count`` COMMITs reach the server and are carried out; their answers never reach the client,
        whose connection then breaks."""
        self.commits_to_drop = count

    async def close(self) -> None:
        await self.stop()
        self.resume()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(client_writer, server_writer)
        self._links.add(link)
        upstream = asyncio.create_task(self._client_to_server(client_reader, link))
        downstream = asyncio.create_task(self._server_to_client(server_reader, link))
        link.tasks = [upstream, downstream]
        try:
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.abort()
            for task in link.tasks:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
            self._links.discard(link)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        await self._flowing.wait()
        writer.write(data)
        await writer.drain()

    async def _client_to_server(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:  # startup: untyped messages, possibly encryption requests first
                await self._flowing.wait()
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    link.client.write(b"N")
                    await link.client.drain()
                    continue
                await self._send(link.server, head + await reader.readexactly(length - 8))
                break
            while True:
                await self._flowing.wait()
                kind = await reader.readexactly(1)
                length = struct.unpack("!i", await reader.readexactly(4))[0]
                body = await reader.readexactly(length - 4)
                if kind == b"Q" and body.lstrip().upper().startswith(b"COMMIT"):
                    self.commits_seen += 1
                    if self.commits_to_drop > 0:
                        self.commits_to_drop -= 1
                        link.drop_answer = True
                await self._send(link.server, kind + struct.pack("!i", length) + body)

    async def _server_to_client(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await self._flowing.wait()
                kind = await reader.readexactly(1)
                raw_length = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack("!i", raw_length)[0] - 4)
                if link.drop_answer:
                    if kind == b"Z":  # ReadyForQuery: the commit is done on the server; break the client's link
                        self.answers_dropped += 1
                        return
                    continue
                await self._send(link.client, kind + raw_length + body)


@contextlib.asynccontextmanager
async def pg_proxy(url: str) -> AsyncIterator[PgProxy]:
    """A started proxy in front of the PostgreSQL server of ``url``; closed on exit."""
    parts = urlsplit(url)
    proxy = PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
