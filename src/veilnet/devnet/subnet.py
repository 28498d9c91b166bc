"""The devnet's subnet on its chain: created once with development-friendly hyperparameters, then kept.

:func:`ensure_subnet` is what every ``up`` and ``add-miner`` runs: it creates the subnet when the record has
none, checks that the recorded one still exists, and registers (funds, and for validators stakes) the
recorded neurons the chain does not know yet — all of them for a new devnet, one for ``add-miner``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.runtime import DevnetRuntime, NeuronRecord, save_runtime
from veilnet.errors import ConfigError
from veilnet.settings import WalletSettings

if TYPE_CHECKING:
    from veilnet.devnet.chain import DevnetChainClient
    from veilnet.wallet import VeilnetWallet

__all__ = ["ensure_subnet", "ensure_wallet", "neuron_record"]

Progress = Callable[[str], None]

FUNDING = 10_000 * RAO_PER_TAO
VALIDATOR_STAKE = 1_000 * RAO_PER_TAO


def ensure_wallet(wallet_path: Path, name: str) -> VeilnetWallet:
    """The devnet wallet ``name`` (unencrypted: it only ever holds devnet funds), created if missing."""
    from veilnet.wallet import create_wallet, load_wallet

    if not (wallet_path / name / "coldkeypub.txt").exists():
        create_wallet(wallet_path, name, "default", password=None)
    return load_wallet(WalletSettings(name=name, hotkey="default", path=wallet_path))


def neuron_record(wallet_path: Path, name: str, role: str, **fields: object) -> NeuronRecord:
    wallet = ensure_wallet(wallet_path, name)
    return NeuronRecord.model_validate({
        "name": name, "role": role, "wallet": name, "hotkey": wallet.hotkey.ss58_address,
        "coldkey": wallet.coldkeypub_ss58, **fields,
    })


async def ensure_subnet(chain: DevnetChainClient, runtime: DevnetRuntime, progress: Progress) -> int:
    """The devnet's netuid, with every recorded neuron registered on it (see the module docstring)."""
    wallet_path = Path(runtime.wallet_path)
    if runtime.netuid is None:
        runtime.netuid = await _create_subnet(chain, runtime, ensure_wallet(wallet_path, "owner"), progress)
        save_runtime(runtime)
    elif not await chain.subnet_exists(runtime.netuid):
        raise ConfigError(
            f"the devnet chain at {runtime.chain_url} has no subnet {runtime.netuid} (was its state in "
            f"{runtime.data_dir}/chain removed?); `veilnet devnet reset` starts a new devnet"
        )
    netuid = runtime.netuid
    metagraph = await chain.get_metagraph(netuid)
    missing = [n for n in runtime.neurons if n.role != "owner" and metagraph.by_hotkey(n.hotkey) is None]
    if missing:
        progress(f"registering {', '.join(n.name for n in missing)} on subnet {netuid}")
    for neuron in missing:
        wallet = ensure_wallet(wallet_path, neuron.wallet)
        if await chain.get_balance(neuron.coldkey) < FUNDING // 2:
            await chain.fund(neuron.coldkey, FUNDING)
        coldkey = wallet.unlock_coldkey(None)
        await chain.burned_register(netuid, coldkey, neuron.hotkey)
        if neuron.role == "validator":
            await chain.add_stake(netuid, coldkey, neuron.hotkey, VALIDATOR_STAKE)
    if any(n.role == "validator" for n in missing):
        # Validator permits are given at an epoch: wait for one so miners accept the validators from the start.
        progress("waiting for the next epoch (validator permits)")
        await chain.wait_for_block(await chain.get_next_epoch_block(netuid) + 1,
                                   timeout=runtime.tempo * runtime.block_time * 4 + 30)
    return netuid


async def _create_subnet(
    chain: DevnetChainClient, runtime: DevnetRuntime, owner: VeilnetWallet, progress: Progress
) -> int:
    """A new subnet owned by the ``owner`` wallet, with hyperparameters for quick epochs and registrations."""
    progress("creating the subnet")
    await chain.fund(owner.coldkeypub_ss58, FUNDING)
    netuid = int(await chain.register_subnet(owner.unlock_coldkey(None), owner.hotkey.ss58_address))
    tempo = runtime.tempo
    for name, value in (
        ("tempo", tempo),
        ("weights_rate_limit", max(1, tempo // 4)),
        ("serving_rate_limit", 0),
        ("activity_cutoff", tempo * 20),
        ("max_regs_per_block", 64),
        ("target_regs_per_interval", 64),
        ("immunity_period", tempo * 4),
        ("min_burn", RAO_PER_TAO // 10),
        ("burn", RAO_PER_TAO // 10),
    ):
        await chain.sudo_set_hyperparameter(netuid, name, value)
    return netuid
