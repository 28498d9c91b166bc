"""``DevnetChain``: the embedded chain in this process — state, SQLite persistence and the block timer.

It implements :class:`veilnet.chain.interface.Chain`. Every extrinsic runs on a copy of the state and is
committed (and saved) only when it succeeds, so a failed call leaves the chain exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bittensor_wallet import Keypair

from veilnet import cancelling
from veilnet.chain import errors as ce
from veilnet.chain.types import AxonInfo, Metagraph, SubnetHyperparameters
from veilnet.devnet.chain.persistence import StateFile
from veilnet.devnet.chain.state import ChainState

__all__ = ["CALLS", "DevnetChain"]

log = logging.getLogger(__name__)

# Extrinsic name -> which key must sign it (Subtensor's origins).
CALLS: dict[str, str] = {
    "register_subnet": "coldkey",
    "burned_register": "coldkey",
    "add_stake": "coldkey",
    "remove_stake": "coldkey",
    "serve_axon": "hotkey",
    "set_weights": "hotkey",
    "commit_weights": "hotkey",
    "reveal_weights": "hotkey",
}


def _public_key(ss58: str) -> bytes:
    try:
        key = Keypair(ss58_address=ss58).public_key
    except Exception as exc:  # bittensor_wallet raises ValueError / its own types for bad addresses
        raise ce.BadOrigin(f"not an SS58 address: {ss58!r}") from exc
    if key is None:
        raise ce.BadOrigin(f"not an SS58 address: {ss58!r}")
    return bytes(key)


class DevnetChain:
    """The devnet chain in-process. ``path`` None keeps it in memory; ``block_time`` None means blocks are
    produced only by :meth:`produce_block` (deterministic tests)."""

    timelocked_commits = False

    def __init__(self, path: Path | None = None, *, block_time: float | None = 1.0) -> None:
        self._path = path
        self._block_time = block_time
        self._store: StateFile | None = None
        self._state = ChainState()
        self._lock = asyncio.Lock()
        self._new_block = asyncio.Condition()
        self._timer: asyncio.Task[None] | None = None
        self._open = False

    # --- lifecycle ----------------------------------------------------------------------------------
    async def __aenter__(self) -> DevnetChain:
        if self._path is not None:
            self._store = await asyncio.to_thread(StateFile, self._path)
            loaded = await asyncio.to_thread(self._store.load)
            if loaded is not None:
                self._state = loaded
        self._open = True
        if self._block_time is not None:
            self._timer = asyncio.create_task(self._block_loop(), name="devnet-blocks")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

    async def _block_loop(self) -> None:
        assert self._block_time is not None
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self._block_time
        while True:
            cancelling.raise_if_stopping()
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self._block_time
            try:
                await self.produce_block()
            except Exception:  # a failing block must not stop the chain; it is logged and retried
                log.exception("devnet block production failed")

    async def _save(self) -> None:
        if self._store is not None:
            await asyncio.to_thread(self._store.save, self._state)

    @property
    def state(self) -> ChainState:
        """The current state (read-only by convention; tests snapshot it)."""
        return self._state

    # --- blocks -------------------------------------------------------------------------------------
    async def produce_block(self) -> int:
        async with self._lock:
            state = self._state.copy_state()
            ran = state.produce_block()
            self._state = state
            await self._save()
        if ran:
            log.info("epoch ran", extra={"block": state.block, "netuids": ran})
        async with self._new_block:
            self._new_block.notify_all()
        return state.block

    async def get_current_block(self) -> int:
        return self._state.block

    async def wait_for_block(self, block: int | None = None, *, timeout: float | None = None) -> int:
        target = self._state.block + 1 if block is None else block

        async def reached() -> int:
            async with self._new_block:
                await self._new_block.wait_for(lambda: self._state.block >= target)
            return self._state.block

        if timeout is None:
            return await reached()
        try:
            async with asyncio.timeout(timeout):
                return await reached()
        except TimeoutError:
            raise ce.ChainUnavailable(f"block {target} not reached within {timeout} s") from None

    # --- reads --------------------------------------------------------------------------------------
    async def subnet_exists(self, netuid: int) -> bool:
        return netuid in self._state.subnets

    async def get_hyperparameters(self, netuid: int) -> SubnetHyperparameters:
        return self._state.hyperparameters(netuid)

    async def get_metagraph(self, netuid: int) -> Metagraph:
        return self._state.metagraph(netuid)

    async def get_balance(self, coldkey_ss58: str) -> int:
        return self._state.balances.get(coldkey_ss58, 0)

    async def get_burn(self, netuid: int) -> int:
        return self._state.subnet(netuid).burn

    async def get_next_epoch_block(self, netuid: int) -> int:
        return self._state.next_epoch_block(netuid)

    async def get_axon(self, netuid: int, hotkey_ss58: str) -> AxonInfo | None:
        subnet = self._state.subnet(netuid)
        uid = subnet.uid_of(hotkey_ss58)
        return None if uid is None else subnet.neurons[uid].axon

    # --- the one write path -------------------------------------------------------------------------
    async def apply(self, call: str, signer: str, args: dict[str, Any], *, nonce: int | None = None) -> Any:
        """Run extrinsic ``call`` signed by ``signer`` (already authenticated) atomically.

        ``nonce`` (from signed HTTP submissions) must exceed the signer's last one: a replayed submission
        is refused. A failed call consumes no nonce, like a failed extrinsic leaves no trace here.
        """
        if call not in CALLS:
            raise ce.ChainError(f"unknown call {call!r}", code="UnknownCall")
        async with self._lock:
            state = self._state.copy_state()
            if nonce is not None:
                if nonce <= state.nonces.get(signer, -1):
                    raise ce.InvalidSignature(f"nonce {nonce} was already used by {signer} (replay)")
                state.nonces[signer] = nonce
            result = _dispatch(state, call, signer, args)
            self._state = state
            await self._save()
        return result

    async def admin(self, call: str, args: dict[str, Any]) -> None:
        """Devnet-only administration: ``fund`` and ``sudo_set_hyperparameter``."""
        async with self._lock:
            state = self._state.copy_state()
            if call == "fund":
                state.fund(_arg(args, "ss58", str), _arg(args, "amount", int))
            elif call == "sudo_set_hyperparameter":
                value = args.get("value")
                if not isinstance(value, int):
                    raise ce.ChainError("value must be an integer or boolean", code="InvalidHyperparameter")
                state.sudo_set_hyperparameter(_arg(args, "netuid", int), _arg(args, "name", str), value)
            else:
                raise ce.ChainError(f"unknown devnet admin call {call!r}", code="UnknownCall")
            self._state = state
            await self._save()

    async def fund(self, ss58: str, amount: int) -> None:
        """Devnet-only faucet: credit ``amount`` rao to ``ss58``."""
        await self.admin("fund", {"ss58": ss58, "amount": amount})

    async def sudo_set_hyperparameter(self, netuid: int, name: str, value: int | bool) -> None:
        """Devnet-only: set one subnet hyperparameter (or the global ``stake_threshold``)."""
        await self.admin("sudo_set_hyperparameter", {"netuid": netuid, "name": name, "value": value})

    # --- Chain writes -------------------------------------------------------------------------------
    async def register_subnet(self, coldkey: Keypair, hotkey_ss58: str) -> int:
        return int(await self.apply("register_subnet", coldkey.ss58_address, {"hotkey": hotkey_ss58}))

    async def burned_register(self, netuid: int, coldkey: Keypair, hotkey_ss58: str) -> int:
        return int(await self.apply("burned_register", coldkey.ss58_address, {"netuid": netuid, "hotkey": hotkey_ss58}))

    async def add_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None:
        await self.apply("add_stake", coldkey.ss58_address, {"netuid": netuid, "hotkey": hotkey_ss58, "amount": amount})

    async def remove_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None:
        await self.apply("remove_stake", coldkey.ss58_address, {"netuid": netuid, "hotkey": hotkey_ss58, "amount": amount})

    async def serve_axon(
        self, netuid: int, hotkey: Keypair, *, ip: str, port: int, protocol: int = 4, version: int = 0
    ) -> None:
        await self.apply(
            "serve_axon", hotkey.ss58_address,
            {"netuid": netuid, "ip": ip, "port": port, "protocol": protocol, "version": version},
        )

    async def set_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], version_key: int
    ) -> None:
        await self.apply(
            "set_weights", hotkey.ss58_address,
            {"netuid": netuid, "uids": list(uids), "weights": list(weights), "version_key": version_key},
        )

    async def commit_weights(self, netuid: int, hotkey: Keypair, commit_hash: bytes) -> None:
        await self.apply("commit_weights", hotkey.ss58_address, {"netuid": netuid, "commit_hash": commit_hash.hex()})

    async def reveal_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], salt: Sequence[int],
        version_key: int,
    ) -> None:
        await self.apply(
            "reveal_weights", hotkey.ss58_address,
            {"netuid": netuid, "uids": list(uids), "weights": list(weights), "salt": list(salt),
             "version_key": version_key},
        )

    async def commit_timelocked_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], version_key: int
    ) -> int:
        """The devnet has no drand beacon to reveal against: hash commit-reveal only."""
        raise ce.TimelockUnsupported()


def _arg(args: dict[str, Any], name: str, kind: type) -> Any:
    value = args.get(name)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ce.ChainError(f"argument {name!r} must be an integer", code="InvalidArgument")
    if kind is str and not isinstance(value, str):
        raise ce.ChainError(f"argument {name!r} must be a string", code="InvalidArgument")
    return value


def _int_list(args: dict[str, Any], name: str) -> list[int]:
    value = args.get(name)
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ce.ChainError(f"argument {name!r} must be a list of integers", code="InvalidArgument")
    return value


def _dispatch(state: ChainState, call: str, signer: str, args: dict[str, Any]) -> Any:
    if call == "register_subnet":
        return state.register_subnet(signer, _arg(args, "hotkey", str))
    netuid = _arg(args, "netuid", int)
    if call == "burned_register":
        return state.burned_register(netuid, signer, _arg(args, "hotkey", str))
    if call == "add_stake":
        return state.add_stake(netuid, signer, _arg(args, "hotkey", str), _arg(args, "amount", int))
    if call == "remove_stake":
        return state.remove_stake(netuid, signer, _arg(args, "hotkey", str), _arg(args, "amount", int))
    if call == "serve_axon":
        return state.serve_axon(
            netuid, signer, _arg(args, "ip", str), _arg(args, "port", int), _arg(args, "protocol", int),
            _arg(args, "version", int),
        )
    if call == "set_weights":
        return state.set_weights(
            netuid, signer, _int_list(args, "uids"), _int_list(args, "weights"), _arg(args, "version_key", int)
        )
    if call == "commit_weights":
        try:
            commit = bytes.fromhex(_arg(args, "commit_hash", str))
        except ValueError as exc:
            raise ce.ChainError("commit_hash must be hex", code="InvalidArgument") from exc
        return state.commit_weights(netuid, signer, commit)
    if call == "reveal_weights":
        return state.reveal_weights(
            netuid, signer, _int_list(args, "uids"), _int_list(args, "weights"), _int_list(args, "salt"),
            _arg(args, "version_key", int), _public_key(signer),
        )
    raise ce.ChainError(f"unknown call {call!r}", code="UnknownCall")
