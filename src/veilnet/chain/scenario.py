"""JSON scenarios for ``veilnet chain epoch``: parse and validate input, serialise output.

Input keys (integers as stored on chain; arrays indexed by uid; weights and bonds sparse as
``[[uid, u16], ...]`` per row) are the fields of :class:`~veilnet.chain.epoch.EpochInput`. Unknown keys,
missing keys and wrong shapes raise :class:`~veilnet.errors.InvalidRequest` naming the field.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import Any

from veilnet.chain.epoch import EpochInput, EpochOutput
from veilnet.errors import InvalidRequest

__all__ = ["output_to_json", "parse_scenario"]

_PER_UID_INTS = ("stake", "last_update", "block_at_registration")
_SPARSE = ("weights", "bonds")
_U16 = ("kappa", "bonds_penalty", "alpha_low", "alpha_high")
_BOOLS = ("yuma3", "liquid_alpha")
_OPTIONAL = {field.name for field in fields(EpochInput) if field.default is not MISSING}
_ALLOWED = {field.name for field in fields(EpochInput)} - {"commit_blocks"}


def _int(value: Any, name: str, *, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer, got {type(value).__name__}", param=name)
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise InvalidRequest(f"{name} must be {bound}, got {value}", param=name)
    return value


def _list(value: Any, name: str, n: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{name} must be a list of {n} entries", param=name)
    if len(value) != n:
        raise InvalidRequest(f"{name} has {len(value)} entries, expected n = {n}", param=name)
    return value


def _sparse(value: Any, name: str, n: int) -> list[list[tuple[int, int]]]:
    rows = _list(value, name, n)
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidRequest(f"{name}[{i}] must be a list of [uid, u16] pairs", param=name)
        parsed = []
        seen = set()
        for k, pair in enumerate(row):
            where = f"{name}[{i}][{k}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise InvalidRequest(f"{where} must be a [uid, u16] pair", param=name)
            uid = _int(pair[0], f"{where} uid", hi=n - 1)
            if uid in seen:
                raise InvalidRequest(f"{where}: uid {uid} appears twice in the row", param=name)
            seen.add(uid)
            parsed.append((uid, _int(pair[1], f"{where} value", hi=65_535)))
        out.append(sorted(parsed))
    return out


def parse_scenario(text: str | bytes) -> EpochInput:
    """Validate a JSON scenario and build the epoch input."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"scenario is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("scenario must be a JSON object")
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise InvalidRequest(f"unknown scenario keys: {', '.join(unknown)}", param=unknown[0])
    required = _ALLOWED - _OPTIONAL
    missing = sorted(required - set(data))
    if missing:
        raise InvalidRequest(f"missing scenario keys: {', '.join(missing)}", param=missing[0])

    n = _int(data["n"], "n", lo=1, hi=65_535)
    values: dict[str, Any] = {"n": n}
    for name in ("current_block", "tempo", "activity_cutoff", "last_mechanism_step_block"):
        values[name] = _int(data[name], name)
    for name in _PER_UID_INTS:
        values[name] = [_int(v, f"{name}[{i}]") for i, v in enumerate(_list(data[name], name, n))]
    permits = _list(data["validator_permit"], "validator_permit", n)
    if not all(isinstance(p, bool) for p in permits):
        raise InvalidRequest("validator_permit entries must be true or false", param="validator_permit")
    values["validator_permit"] = permits
    for name in _SPARSE:
        values[name] = _sparse(data[name], name, n)
    for name in _U16:
        if name in data:
            values[name] = _int(data[name], name, hi=65_535)
    for name in _BOOLS:
        if name in data:
            if not isinstance(data[name], bool):
                raise InvalidRequest(f"{name} must be true or false", param=name)
            values[name] = data[name]
    if "bonds_moving_average" in data:
        values["bonds_moving_average"] = _int(data["bonds_moving_average"], "bonds_moving_average", hi=1_000_000)
    if "max_allowed_validators" in data:
        values["max_allowed_validators"] = _int(data["max_allowed_validators"], "max_allowed_validators", hi=65_535)
    if "alpha_sigmoid_steepness" in data:
        values["alpha_sigmoid_steepness"] = _int(
            data["alpha_sigmoid_steepness"], "alpha_sigmoid_steepness", lo=-32_768, hi=32_767
        )
    if "rao_emission" in data:
        values["rao_emission"] = _int(data["rao_emission"], "rao_emission", hi=2**64 - 1)
    if "stake_threshold" in data:
        values["stake_threshold"] = _int(data["stake_threshold"], "stake_threshold")
    if data.get("owner_uid") is not None:
        values["owner_uid"] = _int(data["owner_uid"], "owner_uid", hi=n - 1)
    return EpochInput(**values)


def output_to_json(output: EpochOutput) -> dict[str, Any]:
    """The tool's output object."""
    return {
        "incentive": output.incentive,
        "dividends": output.dividends,
        "consensus": output.consensus,
        "validator_trust": output.validator_trust,
        "bonds": [[[uid, value] for uid, value in row] for row in output.bonds],
        "server_emission": output.server_emission,
        "validator_emission": output.validator_emission,
        "validator_permit": output.validator_permit,
    }
