"""Fixtures for the Subtensor backend: recorded traffic served by a loopback websocket node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.chain.subtensor.replay_node import load_recordings


@pytest.fixture(scope="session")
def chain_data(data_dir: Path) -> Path:
    return data_dir / "chain"


@pytest.fixture(scope="session")
def recordings(chain_data: Path) -> dict[str, Any]:
    return load_recordings(chain_data)
