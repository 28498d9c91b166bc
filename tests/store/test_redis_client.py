"""A Redis server that accepts connections and never answers fails the command in bounded time."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from veilnet.store.redis import redis_from_url


async def test_a_hung_redis_fails_a_command_in_bounded_time() -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis_from_url(f"redis://127.0.0.1:{port}", command_timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(aioredis.TimeoutError):
            await asyncio.wait_for(client.get("k"), 30)
        assert time.monotonic() - started < 5
    finally:
        await client.aclose(close_connection_pool=True)
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
