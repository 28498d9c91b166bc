"""The relational store: SQLAlchemy async engines with Alembic migrations.

SQLite (``sqlite+aiosqlite://``) by default, PostgreSQL (``postgresql+asyncpg://``) by URL. Opening a database
brings its schema to the newest revision of every store's migration branch (``alembic upgrade heads``).
Each store keeps its tables in its own module and its migrations on its own Alembic branch
(``branch_labels=("<store>",)`` in ``store/migrations/versions/``), so stores evolve independently.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from veilnet.errors import StoreError

__all__ = ["alembic_config", "metadata", "migrate", "normalise_url", "open_database"]

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


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema of every store."""
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    except SQLAlchemyError as exc:
        raise StoreError(f"database migration failed: {exc}") from exc


@contextlib.asynccontextmanager
async def open_database(url: str, *, run_migrations: bool = True) -> AsyncIterator[AsyncEngine]:
    """An async engine on ``url`` (migrated unless told not to), disposed on exit."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(f"invalid database URL: {exc}") from exc
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    try:
        if run_migrations:
            await migrate(engine)
        yield engine
    finally:
        await engine.dispose()
