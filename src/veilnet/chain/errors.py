"""Typed chain errors, shared by every `Chain` backend (devnet and real Subtensor).

Each class carries ``pallet_error``: the name of the SubtensorModule dispatch error it stands for, so the
real backend maps a dispatch error to the same class the devnet raises (by that exact name, never by its
message).

    ChainError (veilnet.errors)
    ├── ChainUnavailable               the node / devnet server cannot be reached
    ├── ChainStateCorrupt              the devnet state file is unreadable
    ├── TimelockUnsupported            the backend has no drand timelock commit-reveal (the devnet)
    ├── InvalidSignature               a devnet request signature does not verify
    ├── BadOrigin                      the signer may not make this call
    ├── SubnetNotExists
    ├── NotRegistered                  HotKeyNotRegisteredInSubNet
    ├── HotKeyAlreadyRegisteredInSubNet
    ├── NonAssociatedColdKey           the hotkey belongs to another coldkey
    ├── NotEnoughBalance               NotEnoughBalanceToStake
    ├── NotEnoughStakeToWithdraw
    ├── AmountTooLow
    ├── TooManyRegistrationsThisBlock / TooManyRegistrationsThisInterval
    ├── SubNetRegistrationDisabled
    ├── NoNeuronIdAvailable
    ├── ServingRateLimitExceeded / InvalidIpType / InvalidIpAddress / InvalidPort
    └── weights:
        WeightVecNotEqualSize, NotEnoughStakeToSetWeights, IncorrectWeightVersionKey,
        SettingWeightsTooFast, NoValidatorPermit, DuplicateUids, UidVecContainInvalidOne,
        WeightVecLengthIsLow, MaxWeightExceeded, UidsLengthExceedUidsInSubNet,
        CommitRevealEnabled, CommitRevealDisabled, NoWeightsCommitFound,
        InvalidRevealCommitHashNotMatch, RevealTooEarly, ExpiredWeightCommit,
        TooManyUnrevealedCommits
"""

from __future__ import annotations

from veilnet.errors import ChainError

__all__ = [
    "AmountTooLow",
    "BadOrigin",
    "ChainError",
    "ChainStateCorrupt",
    "ChainUnavailable",
    "CommitRevealDisabled",
    "CommitRevealEnabled",
    "DuplicateUids",
    "ExpiredWeightCommit",
    "HotKeyAlreadyRegisteredInSubNet",
    "IncorrectWeightVersionKey",
    "InvalidIpAddress",
    "InvalidIpType",
    "InvalidPort",
    "InvalidRevealCommitHashNotMatch",
    "InvalidSignature",
    "MaxWeightExceeded",
    "NoNeuronIdAvailable",
    "NoValidatorPermit",
    "NoWeightsCommitFound",
    "NonAssociatedColdKey",
    "NotEnoughBalance",
    "NotEnoughStakeToSetWeights",
    "NotEnoughStakeToWithdraw",
    "NotRegistered",
    "RevealTooEarly",
    "ServingRateLimitExceeded",
    "SettingWeightsTooFast",
    "SubNetRegistrationDisabled",
    "SubnetNotExists",
    "TimelockUnsupported",
    "TooManyRegistrationsThisBlock",
    "TooManyRegistrationsThisInterval",
    "TooManyUnrevealedCommits",
    "UidVecContainInvalidOne",
    "UidsLengthExceedUidsInSubNet",
    "WeightVecLengthIsLow",
    "WeightVecNotEqualSize",
    "error_for_pallet_name",
]


class _PalletError(ChainError):
    """A chain error that corresponds to one SubtensorModule dispatch error."""

    pallet_error: str = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("pallet_error"):
            cls.pallet_error = cls.__name__
        cls.code = cls.pallet_error

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.pallet_error)


class ChainUnavailable(ChainError):
    code = "chain_unavailable"


class ChainStateCorrupt(ChainError):
    code = "chain_state_corrupt"


class TimelockUnsupported(ChainError):
    """The backend cannot do timelocked commit-reveal (the devnet has no drand beacon)."""

    code = "timelock_unsupported"

    def __init__(self, message: str = "this chain does not support timelocked commit-reveal; use hash "
                 "commit-reveal (commit_weights / reveal_weights)") -> None:
        super().__init__(message)


class InvalidSignature(_PalletError):
    pass


class BadOrigin(_PalletError):
    pass


class SubnetNotExists(_PalletError):
    pass


class NotRegistered(_PalletError):
    pallet_error = "HotKeyNotRegisteredInSubNet"


class HotKeyAlreadyRegisteredInSubNet(_PalletError):
    pass


class NonAssociatedColdKey(_PalletError):
    pass


class NotEnoughBalance(_PalletError):
    pallet_error = "NotEnoughBalanceToStake"


class NotEnoughStakeToWithdraw(_PalletError):
    pass


class AmountTooLow(_PalletError):
    pass


class TooManyRegistrationsThisBlock(_PalletError):
    pass


class TooManyRegistrationsThisInterval(_PalletError):
    pass


class SubNetRegistrationDisabled(_PalletError):
    pass


class NoNeuronIdAvailable(_PalletError):
    pass


class ServingRateLimitExceeded(_PalletError):
    pass


class InvalidIpType(_PalletError):
    pass


class InvalidIpAddress(_PalletError):
    pass


class InvalidPort(_PalletError):
    pass


class WeightVecNotEqualSize(_PalletError):
    pass


class NotEnoughStakeToSetWeights(_PalletError):
    pass


class IncorrectWeightVersionKey(_PalletError):
    pass


class SettingWeightsTooFast(_PalletError):
    pass


class NoValidatorPermit(_PalletError):
    pallet_error = "NeuronNoValidatorPermit"


class DuplicateUids(_PalletError):
    pass


class UidVecContainInvalidOne(_PalletError):
    pass


class WeightVecLengthIsLow(_PalletError):
    pass


class MaxWeightExceeded(_PalletError):
    pass


class UidsLengthExceedUidsInSubNet(_PalletError):
    pass


class CommitRevealEnabled(_PalletError):
    pass


class CommitRevealDisabled(_PalletError):
    pass


class NoWeightsCommitFound(_PalletError):
    pass


class InvalidRevealCommitHashNotMatch(_PalletError):
    pass


class RevealTooEarly(_PalletError):
    pass


class ExpiredWeightCommit(_PalletError):
    pass


class TooManyUnrevealedCommits(_PalletError):
    pass


def _all_pallet_errors() -> dict[str, type[_PalletError]]:
    found: dict[str, type[_PalletError]] = {}
    stack: list[type[_PalletError]] = list(_PalletError.__subclasses__())
    while stack:
        cls = stack.pop()
        found[cls.pallet_error] = cls
        stack.extend(cls.__subclasses__())
    return found


_BY_PALLET_NAME = _all_pallet_errors()


def error_for_pallet_name(name: str, message: str | None = None) -> ChainError:
    """The typed error for a SubtensorModule dispatch error name; unknown names give a plain ChainError."""
    cls = _BY_PALLET_NAME.get(name)
    if cls is None:
        return ChainError(f"chain call failed: {name}" + (f" ({message})" if message else ""), code=name)
    return cls(message or name)
