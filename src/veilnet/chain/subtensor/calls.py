"""The SubtensorModule calls veilnet sends, as plain (pallet, function, params) values.

Pure: building the call bytes from these needs the runtime metadata (the Substrate library does that), but
which call and which arguments is decided here, once, for every write.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from veilnet.chain import errors as ce

__all__ = [
    "CallSpec",
    "add_stake",
    "burned_register",
    "commit_timelocked_weights",
    "commit_weights",
    "ip_to_int",
    "remove_stake",
    "reveal_weights",
    "serve_axon",
    "set_weights",
]

PALLET = "SubtensorModule"


@dataclass(frozen=True, slots=True)
class CallSpec:
    function: str
    params: dict[str, Any]
    pallet: str = PALLET


def ip_to_int(ip: str) -> tuple[int, int]:
    """Textual address -> (integer as Subtensor stores it, ip_type 4 or 6)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError as exc:
        raise ce.InvalidIpAddress(f"not an IP address: {ip!r}") from exc
    return int(address), address.version


def burned_register(netuid: int, hotkey_ss58: str) -> CallSpec:
    return CallSpec("burned_register", {"netuid": netuid, "hotkey": hotkey_ss58})


def add_stake(netuid: int, hotkey_ss58: str, amount: int) -> CallSpec:
    return CallSpec("add_stake", {"hotkey": hotkey_ss58, "netuid": netuid, "amount_staked": amount})


def remove_stake(netuid: int, hotkey_ss58: str, amount: int) -> CallSpec:
    return CallSpec("remove_stake", {"hotkey": hotkey_ss58, "netuid": netuid, "amount_unstaked": amount})


def serve_axon(netuid: int, *, ip: str, port: int, protocol: int, version: int) -> CallSpec:
    ip_int, ip_type = ip_to_int(ip)
    if not 0 < port < 65_536:
        raise ce.InvalidPort(f"port must be 1..65535, got {port}")
    return CallSpec("serve_axon", {
        "netuid": netuid, "version": version, "ip": ip_int, "port": port, "ip_type": ip_type,
        "protocol": protocol, "placeholder1": 0, "placeholder2": 0,
    })


def set_weights(netuid: int, uids: Sequence[int], weights: Sequence[int], version_key: int) -> CallSpec:
    if len(uids) != len(weights):
        raise ce.WeightVecNotEqualSize(f"{len(uids)} uids but {len(weights)} weights")
    return CallSpec("set_weights", {
        "netuid": netuid, "dests": list(uids), "weights": list(weights), "version_key": version_key,
    })


def commit_weights(netuid: int, commit_hash: bytes) -> CallSpec:
    if len(commit_hash) != 32:
        raise ValueError(f"a commit hash is 32 bytes, got {len(commit_hash)}")
    return CallSpec("commit_weights", {"netuid": netuid, "commit_hash": "0x" + commit_hash.hex()})


def reveal_weights(
    netuid: int, uids: Sequence[int], weights: Sequence[int], salt: Sequence[int], version_key: int
) -> CallSpec:
    if len(uids) != len(weights):
        raise ce.WeightVecNotEqualSize(f"{len(uids)} uids but {len(weights)} weights")
    return CallSpec("reveal_weights", {
        "netuid": netuid, "uids": list(uids), "values": list(weights), "salt": list(salt),
        "version_key": version_key,
    })


def commit_timelocked_weights(netuid: int, commit: bytes, reveal_round: int, commit_reveal_version: int) -> CallSpec:
    return CallSpec("commit_timelocked_weights", {
        "netuid": netuid, "commit": "0x" + commit.hex(), "reveal_round": reveal_round,
        "commit_reveal_version": commit_reveal_version,
    })
