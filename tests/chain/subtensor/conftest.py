"""Fixtures for the Subtensor backend: recorded traffic served by a loopback websocket node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def recordings(shared_dir: Path) -> dict[str, Any]:
    path = shared_dir / "fixtures/chain/bittensor_recorded_websocket.json"
    if not path.is_file():
        pytest.skip(f"recorded Subtensor traffic not found at {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
