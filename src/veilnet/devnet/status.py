"""Live status of a local devnet: the chain's block and epoch, and each neuron's role, stake and rewards."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from veilnet.chain.types import RAO_PER_TAO, Metagraph
from veilnet.devnet.processes import is_alive
from veilnet.devnet.runtime import DevnetRuntime

__all__ = ["collect_status", "status_table"]


async def collect_status(runtime: DevnetRuntime) -> dict[str, Any]:
    """A JSON-ready description of the devnet: URLs, API key, services and every neuron."""
    from veilnet.devnet.chain import DevnetChainClient

    block: int | None = None
    next_epoch: int | None = None
    metagraph: Metagraph | None = None
    chain_error: str | None = None
    try:
        async with DevnetChainClient(runtime.chain_url) as chain:
            block = await chain.get_current_block()
            next_epoch = await chain.get_next_epoch_block(runtime.netuid)
            metagraph = await chain.get_metagraph(runtime.netuid)
    except Exception as exc:  # status must report an unreachable chain, not crash on it
        chain_error = f"{type(exc).__name__}: {exc}"

    scores = await _validator_scores(runtime)
    neurons = []
    for record in runtime.neurons:
        info = metagraph.by_hotkey(record.hotkey) if metagraph is not None else None
        neurons.append(
            {
                "name": record.name,
                "role": record.role,
                "uid": info.uid if info else None,
                "hotkey": record.hotkey,
                "coldkey": record.coldkey,
                "axon_url": record.axon_url,
                "gateway": record.gateway,
                "stake": info.stake / RAO_PER_TAO if info else None,
                "incentive": info.incentive_f if info else None,
                "dividends": info.dividends_f if info else None,
                "emission": info.emission / RAO_PER_TAO if info else None,
                "validator_permit": info.validator_permit if info else None,
                "score": scores.get(record.hotkey) if record.role == "miner" else None,
            }
        )
    return {
        "gateway_url": runtime.gateway_url,
        "api_key": runtime.api_key,
        "chain_url": runtime.chain_url,
        "redis_url": runtime.redis_url,
        "netuid": runtime.netuid,
        "block": block,
        "next_epoch_block": next_epoch,
        "chain_error": chain_error,
        "services": [
            {"name": s.name, "pid": s.pid, "alive": is_alive(s.pid), "url": s.url, "log": s.log}
            for s in runtime.services
        ],
        "neurons": neurons,
    }


async def _validator_scores(runtime: DevnetRuntime) -> dict[str, float]:
    """The first validator's current score per miner hotkey, from its Redis state (empty if unreachable)."""
    from veilnet.store.redis import redis_from_url
    from veilnet.store.scores import ScoreStore

    validator = next((n for n in runtime.neurons if n.role == "validator"), None)
    if validator is None:
        return {}
    client = redis_from_url(runtime.redis_url, max_connections=2, timeout=2)
    try:
        states, _ = await ScoreStore(client, validator.hotkey, runtime.netuid).load()
    except (OSError, RedisError):
        return {}
    finally:
        await client.aclose(close_connection_pool=True)
    return {hotkey: state.ema for hotkey, state in states.items()}


def status_table(status: dict[str, Any]) -> Any:
    """A rich renderable of :func:`collect_status`'s result."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header = Text.assemble(
        ("block ", "bold"),
        str(status["block"]),
        ("   next epoch at ", "bold"),
        str(status["next_epoch_block"]),
        ("   netuid ", "bold"),
        str(status["netuid"]),
        ("   gateway ", "bold"),
        str(status["gateway_url"]),
    )
    table = Table(title="neurons", expand=False)
    for column in ("uid", "name", "role", "stake τ", "score", "incentive", "dividends", "emission τ", "permit", "axon"):
        table.add_column(column)

    def fmt(value: object, digits: int = 4) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    for neuron in sorted(status["neurons"], key=lambda n: (n["uid"] is None, n["uid"] or 0)):
        table.add_row(
            fmt(neuron["uid"]),
            neuron["name"],
            neuron["role"],
            fmt(neuron["stake"], 2),
            fmt(neuron["score"]),
            fmt(neuron["incentive"]),
            fmt(neuron["dividends"]),
            fmt(neuron["emission"]),
            fmt(neuron["validator_permit"]),
            neuron["axon_url"] or "",
        )
    services = Table(title="services")
    for column in ("service", "pid", "state", "url"):
        services.add_column(column)
    for service in status["services"]:
        services.add_row(
            service["name"], str(service["pid"]), "up" if service["alive"] else "[red]down[/]", service["url"] or ""
        )
    parts: list[Any] = [header, table, services]
    if status["chain_error"]:
        parts.append(Text(f"chain unreachable: {status['chain_error']}", style="red"))
    return Group(*parts)
