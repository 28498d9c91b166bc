"""Live status of a local devnet: the chain's block and epoch, each neuron's role, stake and rewards, each
service's state, where API keys live and llama.cpp's threads per engine."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from redis.exceptions import RedisError

from veilnet.chain.types import RAO_PER_TAO, Metagraph
from veilnet.devnet.processes import is_running
from veilnet.devnet.runtime import DevnetRuntime, NeuronRecord
from veilnet.models.threads import available_cpus

__all__ = ["DevnetStatus", "NeuronStatus", "ServiceStatus", "collect_status", "status_table"]


class NeuronStatus(BaseModel):
    name: str
    role: str
    uid: int | None
    hotkey: str
    coldkey: str
    axon_url: str | None
    gateway: bool
    model: str | None
    backend: str | None
    threads: int | None
    stake: float | None
    incentive: float | None
    dividends: float | None
    emission: float | None
    validator_permit: bool | None
    score: float | None  # the first validator's stored score of a miner (docs/scoring.md gives its scale)
    tasks: list[str] | None = None  # miners: the tasks they serve


class ServiceStatus(BaseModel):
    name: str
    pid: int
    alive: bool
    url: str | None
    log: str


class DevnetStatus(BaseModel):
    data_dir: str
    gateway_url: str | None
    api_key: str | None
    database_url: str  # where the gateway's API keys live (`veilnet keys` uses it while the devnet runs)
    chain_url: str
    redis_url: str
    netuid: int | None
    block: int | None
    next_epoch_block: int | None
    chain_error: str | None
    ready: bool
    foreground: bool  # a foreground `veilnet devnet up` watches it (`devnet down` ends that too)
    cpus: int  # cores this machine lets veilnet use
    services: list[ServiceStatus]
    neurons: list[NeuronStatus]


async def collect_status(runtime: DevnetRuntime) -> DevnetStatus:
    """The devnet as it is now: the record, the chain's view of each neuron and the validator's scores."""
    from veilnet.devnet.chain import DevnetChainClient

    block: int | None = None
    next_epoch: int | None = None
    metagraph: Metagraph | None = None
    chain_error: str | None = None
    if runtime.netuid is not None:
        try:
            async with DevnetChainClient(runtime.chain_url, timeout=5.0) as chain:
                block = await chain.get_current_block()
                next_epoch = await chain.get_next_epoch_block(runtime.netuid)
                metagraph = await chain.get_metagraph(runtime.netuid)
        except Exception as exc:  # status must report an unreachable chain, not crash on it
            chain_error = f"{type(exc).__name__}: {exc}"
    scores = await _validator_scores(runtime)
    return DevnetStatus(
        data_dir=runtime.data_dir, gateway_url=runtime.gateway_url, api_key=runtime.api_key,
        database_url=runtime.database_url, chain_url=runtime.chain_url, redis_url=runtime.redis_url,
        netuid=runtime.netuid, block=block, next_epoch_block=next_epoch, chain_error=chain_error,
        ready=runtime.ready, foreground=runtime.supervisor is not None and is_running(runtime.supervisor),
        cpus=available_cpus(),
        services=[ServiceStatus(name=s.name, pid=s.pid, alive=is_running(s), url=s.url, log=s.log)
                  for s in runtime.services],
        neurons=[_neuron(record, metagraph, scores) for record in runtime.neurons],
    )


def _neuron(record: NeuronRecord, metagraph: Metagraph | None, scores: dict[str, float]) -> NeuronStatus:
    info = metagraph.by_hotkey(record.hotkey) if metagraph is not None else None
    return NeuronStatus(
        name=record.name, role=record.role, uid=info.uid if info else None, hotkey=record.hotkey,
        coldkey=record.coldkey, axon_url=record.axon_url, gateway=record.gateway, model=record.model,
        backend=record.backend if record.role == "miner" else None, threads=record.threads,
        tasks=record.tasks if record.role == "miner" else None,
        stake=info.stake / RAO_PER_TAO if info else None,
        incentive=info.incentive_f if info else None,
        dividends=info.dividends_f if info else None,
        emission=info.emission / RAO_PER_TAO if info else None,
        validator_permit=info.validator_permit if info else None,
        score=scores.get(record.hotkey) if record.role == "miner" else None,
    )


async def _validator_scores(runtime: DevnetRuntime) -> dict[str, float]:
    """The first validator's current score per miner hotkey, from its Redis state (empty if unreachable)."""
    from veilnet.store.redis import redis_from_url
    from veilnet.store.scores import ScoreStore

    validator = next((n for n in runtime.neurons if n.role == "validator"), None)
    if validator is None or runtime.netuid is None or not runtime.redis_url:
        return {}
    client = redis_from_url(runtime.redis_url, max_connections=2, timeout=2)
    try:
        states, _ = await ScoreStore(client, validator.hotkey, runtime.netuid).load()
    except (OSError, RedisError):
        return {}
    finally:
        await client.aclose(close_connection_pool=True)
    return {hotkey: state.ema for hotkey, state in states.items()}


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _threads_line(status: DevnetStatus) -> str:
    engines = [n for n in status.neurons if n.threads is not None]
    counts = sorted({n.threads for n in engines if n.threads is not None})
    if not engines:
        return f"llama.cpp: no engines, {status.cpus} core{'s' if status.cpus != 1 else ''}"
    per = ", ".join(str(c) for c in counts)
    return (f"llama.cpp: {per} thread{'s' if counts != [1] else ''} per engine, {len(engines)} "
            f"engine{'s' if len(engines) != 1 else ''}, {status.cpus} core{'s' if status.cpus != 1 else ''}")


def status_table(status: DevnetStatus) -> Any:
    """A rich renderable of :func:`collect_status`'s result."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header = Text.assemble(
        ("block ", "bold"), _fmt(status.block), ("   next epoch at ", "bold"), _fmt(status.next_epoch_block),
        ("   netuid ", "bold"), _fmt(status.netuid), ("   gateway ", "bold"), _fmt(status.gateway_url),
    )
    where = Text.assemble(
        ("API keys ", "bold"), status.database_url, " (`veilnet keys` uses it while the devnet runs)   ",
        _threads_line(status),
    )
    table = Table(title="neurons", expand=False)
    for column in ("uid", "name", "role", "model", "stake τ", "score", "incentive", "dividends", "emission τ",
                   "permit", "axon"):
        table.add_column(column, no_wrap=True)
    for n in sorted(status.neurons, key=lambda n: (n.uid is None, n.uid or 0)):
        model = f"{n.model} ({n.backend})" if n.model else "-"
        if n.tasks is not None and n.tasks != ["chat"]:  # what it serves besides (or instead of) the chat model
            model = ", ".join(t if t != "chat" else model for t in n.tasks)
        table.add_row(_fmt(n.uid), n.name, n.role, model, _fmt(n.stake, 2), _fmt(n.score), _fmt(n.incentive),
                      _fmt(n.dividends), _fmt(n.emission), _fmt(n.validator_permit), n.axon_url or "")
    services = Table(title="services", expand=False)
    for column in ("service", "pid", "state", "url", "log"):
        services.add_column(column, no_wrap=True)
    for s in status.services:
        services.add_row(s.name, str(s.pid), "up" if s.alive else "[red]down[/]", s.url or "", s.log)
    parts: list[Any] = [header, where, table, services]
    if status.chain_error:
        parts.append(Text(f"chain unreachable: {status.chain_error}", style="red"))
    return Group(*parts)
