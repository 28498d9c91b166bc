"""The relational store: SQLAlchemy async engines with Alembic migrations.

SQLite (``sqlite+aiosqlite://``) by default, PostgreSQL (``postgresql+asyncpg://``) by URL. Opening a database
brings its schema to the newest revision of every store's migration branch (``alembic upgrade heads``).
Each store keeps its tables in its own module and its migrations on its own Alembic branch
(``branch_labels=("<store>",)`` in ``store/migrations/versions/``), so stores evolve independently.

Nothing waits on the database without a bound (:class:`DatabaseTimeouts`): opening a connection, waiting for a
pooled one, each statement (asyncpg's ``command_timeout``, SQLite's busy timeout), and each store operation as
a whole (:func:`database_errors`). A failing database reaches callers as :class:`~veilnet.errors.StoreError`
only: asyncpg reports a refused or reset connection and its own timeouts as ``OSError`` / ``TimeoutError``,
not as SQLAlchemy errors, so both are translated where a store talks to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from veilnet.errors import StoreError
from veilnet.settings import DatabaseSettings

__all__ = [
    "DatabaseTimeouts", "alembic_config", "database_errors", "metadata", "migrate", "normalise_url", "open_database",
]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

# Every store's tables hang off this one MetaData so Alembic sees them all.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Seconds the stores wait on the database: ``connect`` to open a connection, ``pool`` for a free pooled
    connection, ``statement`` for one statement's answer, ``operation`` for one store operation as a whole
    (a key read, a ledger batch). Migrations at startup run without the statement limit."""

    connect: float = 5.0
    pool: float = 5.0
    statement: float = 10.0
    operation: float = 15.0

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> DatabaseTimeouts:
        return cls(connect=settings.connect_timeout, pool=settings.pool_timeout,
                   statement=settings.statement_timeout, operation=settings.operation_timeout)


# asyncpg raises OSError (ConnectionRefusedError, ConnectionResetError, TimeoutError) for connections refused,
# reset or timed out; SQLAlchemy wraps only the driver's own exception classes
DATABASE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)


LOG_EVERY_SECONDS = 10.0
_logged_at: dict[str, float] = {}  # what -> when its failure was last logged (monotonic)


@contextlib.asynccontextmanager
async def database_errors(what: str, timeout: float | None = None) -> AsyncIterator[None]:
    """Run the block within ``timeout`` seconds; a database failure (or the time running out) leaves it as
    ``StoreError("cannot <what>: ...")`` with the driver's exception as its cause. The message names the kind
    of failure only (it can reach API clients as a 503); the driver's own words (addresses, SQL) go to the
    log, once per ``LOG_EVERY_SECONDS`` for each ``what``."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError as exc:
        _log_failure(what, exc)
        raise StoreError(f"cannot {what}: the database did not answer in time") from exc
    except DATABASE_ERRORS as exc:
        _log_failure(what, exc)
        raise StoreError(f"cannot {what}: the database failed ({type(exc).__name__})") from exc


def _log_failure(what: str, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _logged_at.get(what, -math.inf) >= LOG_EVERY_SECONDS:
        _logged_at[what] = now
        log.warning("cannot %s: %s: %s", what, type(exc).__name__, exc)


def normalise_url(url: str) -> str:
    """Accept plain ``sqlite:///`` / ``postgresql://`` URLs and pick the async drivers."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "heads")


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[object, object], None]:
    def on_connect(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")  # a locked database: an error after this, not a hang
        cursor.close()

    return on_connect


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema of every store."""
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    except DATABASE_ERRORS as exc:
        raise StoreError(f"database migration failed: {exc}") from exc


def _engine(url: str, timeouts: DatabaseTimeouts, *, statement_limit: bool = True) -> AsyncEngine:
    if url.startswith("sqlite"):
        in_memory = ":///" not in url or url.endswith(":memory:")
        engine = create_async_engine(url, **({} if in_memory else {"pool_timeout": timeouts.pool}))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(int(timeouts.statement * 1000)))
        return engine
    connect_args: dict[str, object] = {"timeout": timeouts.connect}
    if statement_limit:
        connect_args["command_timeout"] = timeouts.statement
    return create_async_engine(url, pool_pre_ping=True, pool_timeout=timeouts.pool, connect_args=connect_args)


async def _migrate_without_statement_limit(engine: AsyncEngine, url: str, timeouts: DatabaseTimeouts) -> None:
    if url.startswith("sqlite"):  # its busy timeout bounds waits for locks, not work (and :memory: is per engine)
        await migrate(engine)
        return
    migrations = _engine(url, timeouts, statement_limit=False)
    try:
        await migrate(migrations)
    finally:
        await migrations.dispose()


@contextlib.asynccontextmanager
async def open_database(url: str, *, run_migrations: bool = True,
                        timeouts: DatabaseTimeouts | None = None) -> AsyncIterator[AsyncEngine]:
    """An async engine on ``url`` (migrated unless told not to), disposed on exit. Its connections carry the
    ``timeouts``; migrations run without the statement limit (an index on a long ledger may take a while)."""
    url = normalise_url(url)
    timeouts = timeouts or DatabaseTimeouts()
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = _engine(url, timeouts)
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(f"invalid database URL: {exc}") from exc
    try:
        if run_migrations:
            await _migrate_without_statement_limit(engine, url, timeouts)
        yield engine
    finally:
        await engine.dispose()
