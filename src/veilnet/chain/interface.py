"""The one chain interface every veilnet component uses.

Backends: the embedded devnet chain (:mod:`veilnet.devnet.chain`, in-process or over HTTP) and the real
Subtensor (:mod:`veilnet.chain.subtensor`). Both raise the typed errors of :mod:`veilnet.chain.errors`.

Writes take the signing key (a ``bittensor_wallet.Keypair``): the hotkey for weights and serving, the
coldkey for registration and staking, exactly as Subtensor requires. A backend must sign, or verify, the
call with it; none trusts a bare address.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from bittensor_wallet import Keypair

from veilnet.chain.types import AxonInfo, Metagraph, SubnetHyperparameters

__all__ = ["Chain"]


@runtime_checkable
class Chain(Protocol):
    """Async access to a Subtensor-like chain. Implementations are async context managers."""

    #: whether the backend supports timelocked commit-reveal (``commit_timelocked_weights``)
    timelocked_commits: bool

    async def __aenter__(self) -> Chain: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    # --- reads -------------------------------------------------------------------------------------
    async def get_current_block(self) -> int:
        """The current (best) block number."""
        ...

    async def wait_for_block(self, block: int | None = None, *, timeout: float | None = None) -> int:
        """Wait until ``block`` (default: the next block) is reached; returns the block number reached."""
        ...

    async def subnet_exists(self, netuid: int) -> bool: ...

    async def get_hyperparameters(self, netuid: int) -> SubnetHyperparameters: ...

    async def get_metagraph(self, netuid: int) -> Metagraph: ...

    async def get_balance(self, coldkey_ss58: str) -> int:
        """Free balance in rao."""
        ...

    async def get_burn(self, netuid: int) -> int:
        """Current burned-registration cost in rao."""
        ...

    async def get_next_epoch_block(self, netuid: int) -> int:
        """The block at which the subnet's next epoch runs."""
        ...

    async def get_axon(self, netuid: int, hotkey_ss58: str) -> AxonInfo | None: ...

    # --- writes ------------------------------------------------------------------------------------
    async def register_subnet(self, coldkey: Keypair, hotkey_ss58: str) -> int:
        """Create a subnet owned by ``coldkey`` with ``hotkey_ss58`` as owner hotkey; returns its netuid."""
        ...

    async def burned_register(self, netuid: int, coldkey: Keypair, hotkey_ss58: str) -> int:
        """Register ``hotkey_ss58`` on ``netuid`` paying the burn from ``coldkey``; returns the uid."""
        ...

    async def add_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None:
        """Stake ``amount`` rao from ``coldkey`` onto ``hotkey_ss58`` on ``netuid``."""
        ...

    async def remove_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None: ...

    async def serve_axon(
        self,
        netuid: int,
        hotkey: Keypair,
        *,
        ip: str,
        port: int,
        protocol: int = 4,
        version: int = 0,
    ) -> None: ...

    async def set_weights(
        self,
        netuid: int,
        hotkey: Keypair,
        uids: Sequence[int],
        weights: Sequence[int],
        version_key: int,
    ) -> None:
        """Set u16 ``weights`` for ``uids`` (already max-upscaled; see veilnet.chain.weights)."""
        ...

    async def commit_weights(self, netuid: int, hotkey: Keypair, commit_hash: bytes) -> None:
        """Commit-reveal v2: commit blake2_256 of the SCALE-encoded reveal (veilnet.chain.weights)."""
        ...

    async def reveal_weights(
        self,
        netuid: int,
        hotkey: Keypair,
        uids: Sequence[int],
        weights: Sequence[int],
        salt: Sequence[int],
        version_key: int,
    ) -> None: ...

    async def commit_timelocked_weights(
        self,
        netuid: int,
        hotkey: Keypair,
        uids: Sequence[int],
        weights: Sequence[int],
        version_key: int,
    ) -> int:
        """Timelocked commit-reveal: commit weights encrypted to a drand round, which the chain reveals
        itself. Returns the drand round. Backends without drand raise ``ChainError(code="timelock_unsupported")``."""
        ...
