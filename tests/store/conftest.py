"""Store fixtures: the test PostgreSQL (emptied per test) behind a proxy the test steers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.conftest import empty_postgres
from tests.store.pgproxy import PgProxy, pg_proxy


@pytest.fixture
def postgres_url() -> str:
    """The test PostgreSQL (VEILNET_TEST_POSTGRES_URL), emptied; tests that need one skip without it."""
    url = os.environ.get("VEILNET_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("VEILNET_TEST_POSTGRES_URL is not set")
    return empty_postgres(url)


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[PgProxy]:
    """A proxy in front of the test PostgreSQL: connect through ``proxy.url(postgres_url)``."""
    async with pg_proxy(postgres_url) as started:
        yield started
