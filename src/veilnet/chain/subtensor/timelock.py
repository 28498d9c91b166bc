"""Timelocked commit-reveal: weights encrypted to a future drand round (bittensor-drand), revealed by the chain.

The chain decrypts a commit itself once drand publishes the round's signature, so a validator commits and is
done: nothing to reveal, nothing to keep. The inputs mirror Subtensor's stateful epoch model (LastEpochBlock,
PendingEpochAt, SubnetEpochIndex); on runtimes without those items they are zero and the library falls back
to the tempo arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import bittensor_drand

from veilnet.errors import ChainError

__all__ = ["TimelockInputs", "encrypt_weights"]


@dataclass(frozen=True, slots=True)
class TimelockInputs:
    """What the chain says about the subnet's epoch at the commit block."""

    current_block: int
    tempo: int
    reveal_period_epochs: int
    blocks_since_last_step: int
    last_epoch_block: int = 0
    pending_epoch_at: int = 0
    subnet_epoch_index: int = 0
    block_time: float = 12.0


def encrypt_weights(
    inputs: TimelockInputs,
    *,
    uids: Sequence[int],
    weights: Sequence[int],
    version_key: int,
    hotkey_public_key: bytes,
) -> tuple[bytes, int]:
    """(ciphertext to commit, drand round at which the chain reveals it). Runs offline."""
    try:
        commit, reveal_round = bittensor_drand.get_encrypted_commit_v2(
            list(uids), list(weights), version_key,
            inputs.last_epoch_block, inputs.pending_epoch_at, inputs.subnet_epoch_index,
            inputs.tempo, inputs.blocks_since_last_step, inputs.current_block,
            inputs.reveal_period_epochs, inputs.block_time, hotkey_public_key,
        )
    except ValueError as exc:
        raise ChainError(f"timelock encryption of the weights failed: {exc}", code="timelock_failed") from exc
    return bytes(commit), int(reveal_round)
