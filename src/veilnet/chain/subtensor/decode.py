"""Decoded runtime-API values (plain dicts from the SCALE decoder) -> veilnet's chain types. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from veilnet.chain.types import AxonInfo, Metagraph, NeuronInfo, SubnetHyperparameters
from veilnet.errors import ChainError

__all__ = [
    "METAGRAPH_FIELDS",
    "SELECTIVE_METAGRAPH_INDEX",
    "axon_from",
    "hyperparameters_from",
    "metagraph_from",
    "neuron_from_lite",
]

# Field positions of Subtensor's SelectiveMetagraph (rpc_info/metagraph.rs, SelectiveMetagraphIndex): the index
# list sent to get_selective_metagraph names the fields wanted.
SELECTIVE_METAGRAPH_INDEX: dict[str, int] = {
    name: index
    for index, name in enumerate((
        "netuid", "name", "symbol", "identity", "network_registered_at", "owner_hotkey", "owner_coldkey",
        "block", "tempo", "last_step", "blocks_since_last_step", "subnet_emission", "alpha_in", "alpha_out",
        "tao_in", "alpha_out_emission", "alpha_in_emission", "tao_in_emission", "pending_alpha_emission",
        "pending_root_emission", "subnet_volume", "moving_price", "rho", "kappa", "min_allowed_weights",
        "max_weights_limit", "weights_version", "weights_rate_limit", "activity_cutoff", "max_validators",
        "num_uids", "max_uids", "burn", "difficulty", "registration_allowed", "pow_registration_allowed",
        "immunity_period", "min_difficulty", "max_difficulty", "min_burn", "max_burn", "adjustment_alpha",
        "adjustment_interval", "target_regs_per_interval", "max_regs_per_block", "serving_rate_limit",
        "commit_reveal_weights_enabled", "commit_reveal_period", "liquid_alpha_enabled", "alpha_high",
        "alpha_low", "bonds_moving_avg", "hotkeys", "coldkeys", "identities", "axons", "active",
        "validator_permit", "pruning_score", "last_update", "emission", "dividends", "incentives",
        "consensus", "trust", "rank", "block_at_registration", "alpha_stake", "tao_stake", "total_stake",
        "tao_dividends_per_hotkey", "alpha_dividends_per_hotkey", "validators", "commitments",
    ))
}

# What veilnet's Metagraph needs, and nothing more (identities and commitments are large).
METAGRAPH_FIELDS: tuple[str, ...] = (
    "netuid", "owner_hotkey", "owner_coldkey", "block", "hotkeys", "coldkeys", "axons", "active",
    "validator_permit", "pruning_score", "last_update", "emission", "dividends", "incentives", "consensus",
    "block_at_registration", "total_stake",
)


def _ip_text(ip: int, ip_type: int) -> str:
    if ip == 0:
        return "0.0.0.0"
    if ip_type == 6:
        return str(ipaddress.IPv6Address(ip))
    return str(ipaddress.IPv4Address(ip))


def axon_from(value: Mapping[str, Any] | None) -> AxonInfo | None:
    """A decoded AxonInfo; an axon never served (port 0) is None."""
    if value is None or int(value.get("port", 0)) == 0:
        return None
    ip_type = int(value.get("ip_type", 4))
    return AxonInfo(
        ip=_ip_text(int(value["ip"]), ip_type),
        port=int(value["port"]),
        ip_type=ip_type,
        protocol=int(value.get("protocol", 4)),
        version=int(value.get("version", 0)),
        block=int(value.get("block", 0)),
    )


def _column(value: Mapping[str, Any], name: str, n: int) -> Sequence[Any]:
    column = value.get(name)
    if column is None:
        raise ChainError(f"the node's metagraph answer lacks {name!r}", code="metagraph_incomplete")
    if len(column) != n:
        raise ChainError(
            f"the node's metagraph answer has {len(column)} {name!r} for {n} hotkeys", code="metagraph_incomplete"
        )
    return list(column)


def _int(value: Any) -> int:
    # alpha/tao balances may come wrapped ({"value": n} or similar) depending on the runtime's type names
    if isinstance(value, Mapping):
        value = next(iter(value.values()))
    return int(value)


def metagraph_from(value: Mapping[str, Any], *, netuid: int, block: int) -> Metagraph:
    """A decoded SelectiveMetagraph (or full Metagraph: same field names) -> Metagraph.

    Stake is the metagraph's ``total_stake`` per uid (alpha plus TAO weighted as the chain weights it).
    """
    hotkeys = value.get("hotkeys")
    if hotkeys is None:
        raise ChainError("the node's metagraph answer lacks 'hotkeys'", code="metagraph_incomplete")
    n = len(hotkeys)
    cols = {name: _column(value, name, n) for name in METAGRAPH_FIELDS[4:] if name != "hotkeys"}
    neurons = tuple(
        NeuronInfo(
            uid=uid,
            hotkey=str(hotkeys[uid]),
            coldkey=str(cols["coldkeys"][uid]),
            stake=_int(cols["total_stake"][uid]),
            axon=axon_from(cols["axons"][uid]),
            validator_permit=bool(cols["validator_permit"][uid]),
            incentive=_int(cols["incentives"][uid]),
            dividends=_int(cols["dividends"][uid]),
            emission=_int(cols["emission"][uid]),
            consensus=_int(cols["consensus"][uid]),
            validator_trust=0,  # not exposed by the metagraph runtime API
            last_update=_int(cols["last_update"][uid]),
            block_at_registration=_int(cols["block_at_registration"][uid]),
            active=bool(cols["active"][uid]),
            pruning_score=_int(cols["pruning_score"][uid]),
        )
        for uid in range(n)
    )
    block_value = value.get("block")
    return Metagraph(
        netuid=netuid,
        block=_int(block_value) if block_value is not None else block,
        neurons=neurons,
        owner_hotkey=value.get("owner_hotkey"),
        owner_coldkey=value.get("owner_coldkey"),
    )


def neuron_from_lite(value: Mapping[str, Any]) -> NeuronInfo:
    """One decoded NeuronInfoLite (NeuronInfoRuntimeApi.get_neurons_lite); stake = sum over its stake list."""
    stake_entries = value.get("stake") or []
    stake = sum(_int(amount) for _coldkey, amount in stake_entries)
    return NeuronInfo(
        uid=int(value["uid"]),
        hotkey=str(value["hotkey"]),
        coldkey=str(value["coldkey"]),
        stake=stake,
        axon=axon_from(value.get("axon_info")),
        validator_permit=bool(value["validator_permit"]),
        incentive=int(value["incentive"]),
        dividends=int(value["dividends"]),
        emission=int(value["emission"]),
        consensus=int(value["consensus"]),
        validator_trust=int(value.get("validator_trust", 0)),
        last_update=int(value["last_update"]),
        block_at_registration=int(value.get("block_at_registration", 0)),
        active=bool(value["active"]),
        pruning_score=int(value.get("pruning_score", 0)),
    )


def hyperparameters_from(
    value: Mapping[str, Any], *, netuid: int, burn: int | None = None, extra: Mapping[str, int] | None = None
) -> SubnetHyperparameters:
    """A decoded SubnetHyperparams (SubnetInfoRuntimeApi.get_subnet_hyperparams) -> SubnetHyperparameters."""
    defaults = SubnetHyperparameters(netuid=netuid)

    def field(name: str, default: int) -> int:
        raw = value.get(name)
        return default if raw is None else _int(raw)

    return SubnetHyperparameters(
        netuid=netuid,
        tempo=field("tempo", defaults.tempo),
        kappa=field("kappa", defaults.kappa),
        immunity_period=field("immunity_period", defaults.immunity_period),
        min_allowed_weights=field("min_allowed_weights", defaults.min_allowed_weights),
        max_weight_limit=field("max_weights_limit", defaults.max_weight_limit),
        max_allowed_validators=field("max_validators", defaults.max_allowed_validators),
        weights_version=field("weights_version", defaults.weights_version),
        weights_rate_limit=field("weights_rate_limit", defaults.weights_rate_limit),
        activity_cutoff=field("activity_cutoff", defaults.activity_cutoff),
        bonds_moving_avg=field("bonds_moving_avg", defaults.bonds_moving_avg),
        registration_allowed=bool(value.get("registration_allowed", defaults.registration_allowed)),
        target_regs_per_interval=field("target_regs_per_interval", defaults.target_regs_per_interval),
        adjustment_interval=field("adjustment_interval", defaults.adjustment_interval),
        adjustment_alpha=field("adjustment_alpha", defaults.adjustment_alpha),
        max_regs_per_block=field("max_regs_per_block", defaults.max_regs_per_block),
        min_burn=field("min_burn", defaults.min_burn),
        max_burn=field("max_burn", defaults.max_burn),
        burn=defaults.burn if burn is None else burn,
        serving_rate_limit=field("serving_rate_limit", defaults.serving_rate_limit),
        commit_reveal_weights_enabled=bool(
            value.get("commit_reveal_weights_enabled", defaults.commit_reveal_weights_enabled)
        ),
        commit_reveal_period=field("commit_reveal_period", defaults.commit_reveal_period),
        liquid_alpha_enabled=bool(value.get("liquid_alpha_enabled", defaults.liquid_alpha_enabled)),
        alpha_low=field("alpha_low", defaults.alpha_low),
        alpha_high=field("alpha_high", defaults.alpha_high),
        yuma3_enabled=bool(value.get("yuma3_enabled", defaults.yuma3_enabled)),
        extra=dict(extra or {}),
    )
