"""The record of a running local devnet (``<data dir>/devnet.json``): services, neurons, URLs and the API key.

``veilnet devnet up`` writes it once everything serves; ``status``, ``down`` and a later ``up`` read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from veilnet.errors import ConfigError

__all__ = ["DevnetRuntime", "NeuronRecord", "ServiceRecord", "load_runtime", "runtime_path", "save_runtime"]

RUNTIME_FILE = "devnet.json"


class ServiceRecord(BaseModel):
    name: str
    pid: int
    log: str
    url: str | None = None


class NeuronRecord(BaseModel):
    name: str
    role: Literal["owner", "validator", "miner"]
    wallet: str
    hotkey: str
    coldkey: str
    axon_url: str | None = None
    gateway: bool = False


class DevnetRuntime(BaseModel):
    data_dir: str
    netuid: int
    chain_url: str
    redis_url: str
    database_url: str
    gateway_url: str | None
    api_key: str | None
    wallet_path: str
    services: list[ServiceRecord]
    neurons: list[NeuronRecord]
    started_at: float


def runtime_path(data_dir: Path) -> Path:
    return data_dir / RUNTIME_FILE


def save_runtime(runtime: DevnetRuntime) -> Path:
    path = runtime_path(Path(runtime.data_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(runtime.model_dump_json(indent=2))
    tmp.chmod(0o600)  # it holds an API key
    tmp.replace(path)
    return path


def load_runtime(data_dir: Path) -> DevnetRuntime | None:
    """The recorded devnet, or None when none was started here; a damaged file is a clear ConfigError."""
    path = runtime_path(data_dir)
    if not path.exists():
        return None
    try:
        return DevnetRuntime.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise ConfigError(f"devnet state file {path} is unreadable ({exc}); run `veilnet devnet reset`") from exc
