"""Subtensor's failures -> the typed errors of :mod:`veilnet.chain.errors`, the same the devnet raises. Pure.

Two kinds reach a client: a dispatch error (the extrinsic was included and failed: ``ExtrinsicFailed`` with a
``Module`` error named by the pallet) and a transaction-pool rejection (``Invalid Transaction`` with
``Custom error: N``, Subtensor's ``CustomTransactionError`` codes from its transaction extension).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from veilnet.chain import errors as ce
from veilnet.errors import ChainError

__all__ = ["error_from_dispatch", "error_from_pool_rejection"]

# Names Subtensor uses for the same condition as one of veilnet's errors.
_ALIASES: dict[str, type[ChainError]] = {
    "SubNetworkDoesNotExist": ce.SubnetNotExists,
    "MechanismDoesNotExist": ce.SubnetNotExists,
    "HotKeyNotRegisteredInNetwork": ce.NotRegistered,
    "HotKeyAccountNotExists": ce.NotRegistered,
    "CommittingWeightsTooFast": ce.SettingWeightsTooFast,
    "InsufficientBalance": ce.NotEnoughBalance,
    "NotEnoughStake": ce.NotEnoughStakeToWithdraw,
}

# common/src/transaction_error.rs: CustomTransactionError -> u8
_POOL_CODES: dict[int, tuple[str, type[ChainError] | None]] = {
    1: ("StakeAmountTooLow", ce.AmountTooLow),
    2: ("BalanceTooLow", ce.NotEnoughBalance),
    3: ("SubnetNotExists", ce.SubnetNotExists),
    4: ("HotkeyAccountDoesntExist", ce.NotRegistered),
    5: ("NotEnoughStakeToWithdraw", ce.NotEnoughStakeToWithdraw),
    6: ("RateLimitExceeded", None),
    10: ("HotKeyNotRegisteredInNetwork", ce.NotRegistered),
    11: ("InvalidIpAddress", ce.InvalidIpAddress),
    12: ("ServingRateLimitExceeded", ce.ServingRateLimitExceeded),
    13: ("InvalidPort", ce.InvalidPort),
    15: ("InvalidRevealRound", None),
    16: ("CommitNotFound", ce.NoWeightsCommitFound),
    17: ("CommitBlockNotInRevealRange", ce.RevealTooEarly),
    18: ("InputLengthsUnequal", ce.WeightVecNotEqualSize),
    19: ("UidNotFound", ce.UidVecContainInvalidOne),
    25: ("NonAssociatedColdKey", ce.NonAssociatedColdKey),
}

_WEIGHT_CALLS = frozenset({"set_weights", "commit_weights", "reveal_weights", "commit_timelocked_weights"})
_CUSTOM = re.compile(r"Custom error:\s*(\d+)")


def error_from_dispatch(error: Mapping[str, Any] | None, *, call: str) -> ChainError:
    """The receipt's ``error_message`` ({"type": "Module", "name": ..., "docs": ...}) -> typed error."""
    if not error:
        return ChainError(f"{call} failed without an error from the node", code="dispatch_failed")
    name = str(error.get("name") or error.get("type") or "Unknown")
    docs = error.get("docs")
    detail = " ".join(docs) if isinstance(docs, list) else (str(docs) if docs else "")
    message = f"{call}: {name}" + (f" ({detail})" if detail else "")
    alias = _ALIASES.get(name)
    if alias is not None:
        return alias(message)
    return ce.error_for_pallet_name(name, message)


def error_from_pool_rejection(text: str, *, call: str) -> ChainError | None:
    """A transaction-pool rejection carrying Subtensor's custom code -> typed error; None if it carries none."""
    found = _CUSTOM.search(text)
    if found is None:
        return None
    code = int(found.group(1))
    name, cls = _POOL_CODES.get(code, (f"CustomTransactionError{code}", None))
    if code == 6 and call in _WEIGHT_CALLS:
        cls = ce.SettingWeightsTooFast
    message = f"{call} refused by the transaction pool: {name} (custom error {code})"
    if cls is None:
        return ChainError(message, code=name)
    return cls(message)
