"""``SubtensorChain``: the :class:`~veilnet.chain.interface.Chain` interface on a real Subtensor node.

Transport, SCALE, metadata, signed extensions and era are async-substrate-interface's; this module decides
which storage items, runtime APIs and calls veilnet uses and turns the node's failures into veilnet's typed
errors. Writes wait for inclusion in a block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from async_substrate_interface import AsyncSubstrateInterface
from async_substrate_interface.errors import SubstrateRequestException
from bittensor_wallet import Keypair
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from veilnet.chain import errors as ce
from veilnet.chain.subtensor import calls
from veilnet.chain.subtensor.decode import (
    METAGRAPH_FIELDS,
    SELECTIVE_METAGRAPH_INDEX,
    axon_from,
    hyperparameters_from,
    metagraph_from,
)
from veilnet.chain.subtensor.dispatch import error_from_dispatch, error_from_pool_rejection
from veilnet.chain.subtensor.networks import runtime_version_warning
from veilnet.chain.subtensor.timelock import TimelockInputs, encrypt_weights
from veilnet.chain.types import AxonInfo, Metagraph, SubnetHyperparameters
from veilnet.errors import ChainError
from veilnet.logs import log_event

__all__ = ["SubtensorChain"]

log = logging.getLogger(__name__)

SS58_FORMAT = 42
_CONNECT_ERRORS = (OSError, TimeoutError, WebSocketException, InvalidHandshake, SubstrateRequestException)


class SubtensorChain:
    """A Subtensor node at ``url`` (ws:// or wss://). Use as ``async with SubtensorChain(url) as chain``."""

    timelocked_commits = True

    def __init__(
        self,
        url: str,
        *,
        block_time: float = 12.0,
        connect_attempts: int = 5,
        connect_timeout: float = 20.0,
        backoff: float = 0.5,
        era_period: int = 64,
    ) -> None:
        self.url = url
        self.block_time = block_time
        self._connect_attempts = max(1, connect_attempts)
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._era_period = era_period
        self._substrate: AsyncSubstrateInterface | None = None
        self.spec_version: int | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    async def __aenter__(self) -> SubtensorChain:
        delay = self._backoff
        last_error: Exception | None = None
        for attempt in range(1, self._connect_attempts + 1):
            substrate = AsyncSubstrateInterface(
                self.url, ss58_format=SS58_FORMAT, max_retries=3, retry_timeout=30.0, ws_shutdown_timer=None
            )
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await substrate.initialize()
                    runtime = await substrate.init_runtime()
            except InvalidURI as exc:
                raise ce.ChainUnavailable(f"not a websocket URL: {self.url!r} ({exc})") from exc
            except _CONNECT_ERRORS as exc:
                last_error = exc
                await _close_quietly(substrate)
                log_event(log, "subtensor connect failed", logging.WARNING, url=self.url, attempt=attempt,
                          error=str(exc)[:200])
                if attempt < self._connect_attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                continue
            self._substrate = substrate
            self.spec_version = int(runtime.runtime_version or 0)
            warning = runtime_version_warning(self.spec_version)
            if warning:
                log_event(log, "untested subtensor runtime", logging.WARNING, detail=warning)
            log_event(log, "subtensor connected", url=self.url, spec_version=self.spec_version)
            return self
        raise ce.ChainUnavailable(
            f"Subtensor node at {self.url} unreachable after {self._connect_attempts} attempts: {last_error}"
        )

    async def __aexit__(self, *exc_info: object) -> None:
        if self._substrate is not None:
            substrate, self._substrate = self._substrate, None
            await _close_quietly(substrate)

    @property
    def substrate(self) -> AsyncSubstrateInterface:
        if self._substrate is None:
            raise ce.ChainUnavailable("SubtensorChain is not open: use `async with`")
        return self._substrate

    # --- low-level helpers ---------------------------------------------------------------------------
    async def _runtime_apis(self) -> dict[str, dict[str, Any]]:
        runtime = await self.substrate.init_runtime()
        return dict(runtime.runtime_api_map)

    async def _has_storage(self, pallet: str, name: str) -> bool:
        runtime = await self.substrate.init_runtime()
        try:
            return runtime.metadata.get_metadata_pallet(pallet).get_storage_function(name) is not None
        except (AttributeError, ValueError):
            return False

    async def _query(self, name: str, params: list[Any], *, pallet: str = "SubtensorModule") -> Any:
        try:
            result = await self.substrate.query(pallet, name, params)
        except SubstrateRequestException as exc:
            raise ce.ChainUnavailable(f"reading {pallet}.{name} failed: {exc}") from exc
        return getattr(result, "value", result)

    async def _query_or(self, name: str, params: list[Any], default: int) -> int:
        """A storage item newer runtimes have and older ones lack: ``default`` where absent."""
        if not await self._has_storage("SubtensorModule", name):
            return default
        value = await self._query(name, params)
        return default if value is None else int(value)

    async def _runtime_call(self, api: str, method: str, params: list[Any]) -> Any:
        try:
            return await self.substrate.runtime_call(api, method, params)
        except SubstrateRequestException as exc:
            raise ce.ChainUnavailable(f"runtime call {api}.{method} failed: {exc}") from exc

    async def _submit(self, keypair: Keypair, call: calls.CallSpec) -> Any:
        """Sign ``call`` with ``keypair``, submit, wait for inclusion; typed error on any failure."""
        substrate = self.substrate
        try:
            composed = await substrate.compose_call(call.pallet, call.function, call.params)
            extrinsic = await substrate.create_signed_extrinsic(
                call=composed, keypair=keypair, era={"period": self._era_period}
            )
            receipt = await substrate.submit_extrinsic(extrinsic, wait_for_inclusion=True)
            if not await receipt.is_success:
                raise error_from_dispatch(await receipt.error_message, call=call.function)
        except SubstrateRequestException as exc:
            text = str(exc)
            typed = error_from_pool_rejection(text, call=call.function)
            if typed is not None:
                raise typed from exc
            raise ChainError(f"{call.function} failed: {text[:300]}", code="extrinsic_failed") from exc
        except (OSError, WebSocketException) as exc:
            raise ce.ChainUnavailable(f"{call.function}: connection to {self.url} lost: {exc}") from exc
        log_event(log, "extrinsic included", call=call.function, block_hash=getattr(receipt, "block_hash", None))
        return receipt

    # --- reads ---------------------------------------------------------------------------------------
    async def get_current_block(self) -> int:
        try:
            return int(await self.substrate.get_block_number(None))
        except SubstrateRequestException as exc:
            raise ce.ChainUnavailable(f"reading the block number failed: {exc}") from exc

    async def wait_for_block(self, block: int | None = None, *, timeout: float | None = None) -> int:
        target = (await self.get_current_block() + 1) if block is None else block
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = max(0.05, min(self.block_time / 4, 1.0))
        while True:
            current = await self.get_current_block()
            if current >= target:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"block {target} not reached within {timeout}s (at {current})")
            await asyncio.sleep(poll)

    async def subnet_exists(self, netuid: int) -> bool:
        return bool(await self._query("NetworksAdded", [netuid]))

    async def _require_subnet(self, netuid: int) -> None:
        if not await self.subnet_exists(netuid):
            raise ce.SubnetNotExists(f"subnet {netuid} does not exist")

    async def get_hyperparameters(self, netuid: int) -> SubnetHyperparameters:
        value = await self._runtime_call("SubnetInfoRuntimeApi", "get_subnet_hyperparams", [netuid])
        if value is None:
            raise ce.SubnetNotExists(f"subnet {netuid} does not exist")
        burn = await self.get_burn(netuid)
        return hyperparameters_from(value, netuid=netuid, burn=burn)

    async def get_metagraph(self, netuid: int) -> Metagraph:
        apis = (await self._runtime_apis()).get("SubnetInfoRuntimeApi", {})
        if "get_selective_metagraph" in apis:
            indexes = [SELECTIVE_METAGRAPH_INDEX[name] for name in METAGRAPH_FIELDS]
            value = await self._runtime_call("SubnetInfoRuntimeApi", "get_selective_metagraph", [netuid, indexes])
        elif "get_metagraph" in apis:
            log_event(log, "selective metagraph unavailable, using get_metagraph", logging.WARNING,
                      spec_version=self.spec_version)
            value = await self._runtime_call("SubnetInfoRuntimeApi", "get_metagraph", [netuid])
        else:
            raise ChainError(
                f"the node's runtime (spec {self.spec_version}) has neither get_selective_metagraph nor "
                "get_metagraph", code="runtime_unsupported",
            )
        if value is None:
            raise ce.SubnetNotExists(f"subnet {netuid} does not exist")
        return metagraph_from(value, netuid=netuid, block=await self.get_current_block())

    async def get_balance(self, coldkey_ss58: str) -> int:
        account = await self._query("Account", [coldkey_ss58], pallet="System")
        return int(account["data"]["free"]) if account else 0

    async def get_burn(self, netuid: int) -> int:
        return int(await self._query("Burn", [netuid]) or 0)

    async def get_next_epoch_block(self, netuid: int) -> int:
        apis = (await self._runtime_apis()).get("SubnetInfoRuntimeApi", {})
        if "get_next_epoch_start_block" in apis:
            value = await self._runtime_call("SubnetInfoRuntimeApi", "get_next_epoch_start_block", [netuid])
            if value is None:
                raise ChainError(f"subnet {netuid} has tempo 0: it runs no epochs", code="no_epochs")
            return int(value)
        tempo = int(await self._query("Tempo", [netuid]) or 0)
        if tempo == 0:
            raise ChainError(f"subnet {netuid} has tempo 0: it runs no epochs", code="no_epochs")
        block = await self.get_current_block()
        if await self._has_storage("SubtensorModule", "LastEpochBlock"):
            return int(await self._query("LastEpochBlock", [netuid]) or 0) + tempo
        # Legacy schedule: the epoch runs when (block + netuid + 1) % (tempo + 1) == 0.
        remainder = (block + netuid + 1) % (tempo + 1)
        return block + (tempo - remainder)

    async def get_axon(self, netuid: int, hotkey_ss58: str) -> AxonInfo | None:
        return axon_from(await self._query("Axons", [netuid, hotkey_ss58]))

    async def get_uid(self, netuid: int, hotkey_ss58: str) -> int | None:
        value = await self._query("Uids", [netuid, hotkey_ss58])
        return None if value is None else int(value)

    # --- writes --------------------------------------------------------------------------------------
    async def register_subnet(self, coldkey: Keypair, hotkey_ss58: str) -> int:
        receipt = await self._submit(coldkey, calls.CallSpec("register_network", {"hotkey": hotkey_ss58}))
        for event in await receipt.triggered_events:
            body = event.get("event", event)
            if body.get("event_id") == "NetworkAdded":
                attributes = body.get("attributes")
                first = attributes[0] if isinstance(attributes, list | tuple) else attributes
                return int(first)
        raise ChainError("register_network was included but no NetworkAdded event names the netuid")

    async def burned_register(self, netuid: int, coldkey: Keypair, hotkey_ss58: str) -> int:
        await self._require_subnet(netuid)
        await self._submit(coldkey, calls.burned_register(netuid, hotkey_ss58))
        uid = await self.get_uid(netuid, hotkey_ss58)
        if uid is None:
            raise ChainError(f"burned_register was included but {hotkey_ss58} has no uid on subnet {netuid}")
        return uid

    async def add_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None:
        await self._submit(coldkey, calls.add_stake(netuid, hotkey_ss58, amount))

    async def remove_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None:
        await self._submit(coldkey, calls.remove_stake(netuid, hotkey_ss58, amount))

    async def serve_axon(
        self, netuid: int, hotkey: Keypair, *, ip: str, port: int, protocol: int = 4, version: int = 0
    ) -> None:
        await self._submit(hotkey, calls.serve_axon(netuid, ip=ip, port=port, protocol=protocol, version=version))

    async def set_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], version_key: int
    ) -> None:
        await self._submit(hotkey, calls.set_weights(netuid, uids, weights, version_key))

    async def commit_weights(self, netuid: int, hotkey: Keypair, commit_hash: bytes) -> None:
        await self._submit(hotkey, calls.commit_weights(netuid, commit_hash))

    async def reveal_weights(
        self,
        netuid: int,
        hotkey: Keypair,
        uids: Sequence[int],
        weights: Sequence[int],
        salt: Sequence[int],
        version_key: int,
    ) -> None:
        await self._submit(hotkey, calls.reveal_weights(netuid, uids, weights, salt, version_key))

    async def timelock_inputs(self, netuid: int) -> TimelockInputs:
        """The subnet's epoch state that a timelocked commit is encrypted against."""
        tempo = int(await self._query("Tempo", [netuid]) or 0)
        return TimelockInputs(
            current_block=await self.get_current_block(),
            tempo=tempo,
            reveal_period_epochs=await self._query_or("RevealPeriodEpochs", [netuid], 1),
            blocks_since_last_step=await self._query_or("BlocksSinceLastStep", [netuid], 0),
            last_epoch_block=await self._query_or("LastEpochBlock", [netuid], 0),
            pending_epoch_at=await self._query_or("PendingEpochAt", [netuid], 0),
            subnet_epoch_index=await self._query_or("SubnetEpochIndex", [netuid], 0),
            block_time=self.block_time,
        )

    async def commit_timelocked_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], version_key: int
    ) -> int:
        """Commit weights encrypted to a drand round; the chain reveals them itself. Returns the round."""
        if len(uids) != len(weights):
            raise ce.WeightVecNotEqualSize(f"{len(uids)} uids but {len(weights)} weights")
        inputs = await self.timelock_inputs(netuid)
        commit, reveal_round = encrypt_weights(
            inputs, uids=uids, weights=weights, version_key=version_key,
            hotkey_public_key=bytes(hotkey.public_key or b""),
        )
        version = await self._query_or("CommitRevealWeightsVersion", [], 4)
        await self._submit(hotkey, calls.commit_timelocked_weights(netuid, commit, reveal_round, version))
        return reveal_round


async def _close_quietly(substrate: AsyncSubstrateInterface) -> None:
    try:
        await substrate.close()  # type: ignore[no-untyped-call]
    except (OSError, WebSocketException, RuntimeError):
        pass
