"""The record of a local devnet (``<data dir>/devnet.json``): what it is and what runs now.

What the devnet *is* stays from one ``up`` to the next: its subnet (netuid), neurons with their wallets and
ports, the chain, Redis and gateway URLs, the API key. What *runs* belongs to one ``up`` (its ``instance``):
the services it started, each as pid plus start time, and the foreground ``up`` process itself
(``supervisor``), so ``down`` can end it. ``up`` writes the file as it starts each service; ``status``,
``down``, ``logs``, ``add-miner``, ``keys`` and the next ``up`` read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from veilnet.devnet.processes import ProcessRecord, ServiceRecord, is_running
from veilnet.errors import ConfigError

__all__ = [
    "DevnetRuntime",
    "NeuronRecord",
    "devnet_lock",
    "load_runtime",
    "port_of",
    "running_devnet",
    "runtime_path",
    "save_runtime",
]

RUNTIME_FILE = "devnet.json"
LOCK_FILE = "devnet.lock"


class NeuronRecord(BaseModel):
    """A neuron of the subnet. Miners carry what they serve (``model`` through ``backend``, an upstream URL
    for the ``openai`` backend); miners and validators carry the llama.cpp threads of their engine."""

    name: str
    role: Literal["owner", "validator", "miner"]
    wallet: str
    hotkey: str
    coldkey: str
    axon_url: str | None = None
    gateway: bool = False
    model: str | None = None
    backend: Literal["llamacpp", "openai"] = "llamacpp"
    upstream_url: str | None = None
    threads: int | None = None
    tasks: list[str] = Field(default_factory=lambda: ["chat"])  # miners: the installed tasks they serve


class DevnetRuntime(BaseModel):
    data_dir: str
    netuid: int | None  # None until the subnet is created
    chain_url: str
    redis_url: str
    database_url: str
    gateway_url: str | None
    api_key: str | None
    wallet_path: str
    block_time: float
    tempo: int
    neurons: list[NeuronRecord]
    instance: str  # the `up` that started the services below
    supervisor: ProcessRecord | None = None  # that `up` while it runs in the foreground
    services: list[ServiceRecord]
    ready: bool = False  # every service served when that `up` finished starting them
    started_at: float

    def running_services(self) -> list[ServiceRecord]:
        return [service for service in self.services if is_running(service)]

    def neuron(self, name: str) -> NeuronRecord | None:
        return next((n for n in self.neurons if n.name == name), None)

    def miners(self) -> list[NeuronRecord]:
        return [n for n in self.neurons if n.role == "miner"]

    def validators(self) -> list[NeuronRecord]:
        return [n for n in self.neurons if n.role == "validator"]


def port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ConfigError(f"recorded URL {url!r} names no port")
    return port


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
        raise ConfigError(
            f"devnet state file {path} is unreadable or from an older veilnet ({exc}); stop its processes and "
            "run `veilnet devnet reset`"
        ) from exc


def running_devnet(data_dir: Path) -> DevnetRuntime | None:
    """The devnet recorded in ``data_dir`` if any of its services runs now, else None."""
    runtime = load_runtime(data_dir)
    if runtime is None or not runtime.running_services():
        return None
    return runtime


@contextlib.contextmanager
def devnet_lock(data_dir: Path, what: str) -> Iterator[None]:
    """Hold ``<data dir>/devnet.lock`` while ``what`` changes the devnet (starting it, adding a miner), so two
    commands never start services for the same devnet at once; the kernel drops the lock if the holder dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another veilnet command is changing the devnet in {data_dir}; wait for it to finish ({what})"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
