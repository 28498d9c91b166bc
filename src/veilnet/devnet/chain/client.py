"""``DevnetChainClient``: the :class:`~veilnet.chain.interface.Chain` interface over the devnet's HTTP API.

Extrinsics are signed by the key the method takes (sr25519 over the exact body bytes, with a growing
nonce); the server's typed errors come back as the same :mod:`veilnet.chain.errors` classes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx
from bittensor_wallet import Keypair

from veilnet.chain import errors as ce
from veilnet.chain.types import AxonInfo, Metagraph, NeuronInfo, SubnetHyperparameters
from veilnet.devnet.chain.server import SIGNATURE_HEADER

__all__ = ["DevnetChainClient"]


def _axon(data: dict[str, Any] | None) -> AxonInfo | None:
    return None if data is None else AxonInfo(**data)


class DevnetChainClient:
    """Talks to ``veilnet chain serve`` at ``url``."""

    timelocked_commits = False

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._last_nonce = 0

    async def __aenter__(self) -> DevnetChainClient:
        self._client = httpx.AsyncClient(base_url=self.url, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise ce.ChainUnavailable("DevnetChainClient is not open: use `async with`")
        return self._client

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ce.ChainUnavailable(f"devnet chain at {self.url} unreachable: {exc}") from exc
        try:
            data = response.json()
        except ValueError:
            raise ce.ChainUnavailable(f"devnet chain answered HTTP {response.status_code} without JSON") from None
        if response.status_code >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            code = str(error.get("code", "ChainError"))
            message = str(error.get("message", f"HTTP {response.status_code}"))
            if code == "chain_unavailable":
                raise ce.ChainUnavailable(message)
            raise ce.error_for_pallet_name(code, message)
        return data

    # --- reads --------------------------------------------------------------------------------------
    async def get_current_block(self) -> int:
        return int((await self._request("GET", "/block"))["block"])

    async def wait_for_block(self, block: int | None = None, *, timeout: float | None = None) -> int:
        target = block if block is not None else await self.get_current_block() + 1
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = 30.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise ce.ChainUnavailable(f"block {target} not reached within {timeout} s")
            try:
                data = await self._request("GET", "/wait", params={"block": target, "timeout": min(remaining, 30.0)})
                return int(data["block"])
            except ce.ChainUnavailable:
                # the server's long poll ended without the block, or the chain blinked: poll again
                await asyncio.sleep(0.1)

    async def subnet_exists(self, netuid: int) -> bool:
        return bool((await self._request("GET", f"/subnets/{netuid}/exists"))["exists"])

    async def get_hyperparameters(self, netuid: int) -> SubnetHyperparameters:
        return SubnetHyperparameters(**await self._request("GET", f"/subnets/{netuid}/hyperparameters"))

    async def get_metagraph(self, netuid: int) -> Metagraph:
        data = await self._request("GET", f"/subnets/{netuid}/metagraph")
        neurons = tuple(NeuronInfo(**{**n, "axon": _axon(n["axon"])}) for n in data["neurons"])
        return Metagraph(
            netuid=data["netuid"], block=data["block"], neurons=neurons,
            owner_hotkey=data["owner_hotkey"], owner_coldkey=data["owner_coldkey"],
        )

    async def get_balance(self, coldkey_ss58: str) -> int:
        return int((await self._request("GET", f"/balances/{coldkey_ss58}"))["balance"])

    async def get_burn(self, netuid: int) -> int:
        return int((await self._request("GET", f"/subnets/{netuid}/burn"))["burn"])

    async def get_next_epoch_block(self, netuid: int) -> int:
        return int((await self._request("GET", f"/subnets/{netuid}/next_epoch"))["block"])

    async def get_axon(self, netuid: int, hotkey_ss58: str) -> AxonInfo | None:
        return _axon((await self._request("GET", f"/subnets/{netuid}/axons/{hotkey_ss58}"))["axon"])

    # --- writes -------------------------------------------------------------------------------------
    def _nonce(self) -> int:
        self._last_nonce = max(time.time_ns(), self._last_nonce + 1)
        return self._last_nonce

    async def submit(self, call: str, key: Keypair, args: dict[str, Any]) -> Any:
        """Sign and submit one extrinsic; returns its result."""
        body = json.dumps({"call": call, "signer": key.ss58_address, "nonce": self._nonce(), "args": args}).encode()
        signature = key.sign(body).hex()
        data = await self._request(
            "POST", "/extrinsic", content=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
        )
        return data["result"]

    async def fund(self, ss58: str, amount: int) -> None:
        """Devnet-only faucet."""
        await self._request("POST", "/admin/fund", json={"ss58": ss58, "amount": amount})

    async def sudo_set_hyperparameter(self, netuid: int, name: str, value: int | bool) -> None:
        """Devnet-only: set a subnet hyperparameter."""
        await self._request(
            "POST", "/admin/sudo_set_hyperparameter", json={"netuid": netuid, "name": name, "value": value}
        )

    async def register_subnet(self, coldkey: Keypair, hotkey_ss58: str) -> int:
        return int(await self.submit("register_subnet", coldkey, {"hotkey": hotkey_ss58}))

    async def burned_register(self, netuid: int, coldkey: Keypair, hotkey_ss58: str) -> int:
        return int(await self.submit("burned_register", coldkey, {"netuid": netuid, "hotkey": hotkey_ss58}))

    async def add_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None:
        await self.submit("add_stake", coldkey, {"netuid": netuid, "hotkey": hotkey_ss58, "amount": amount})

    async def remove_stake(self, netuid: int, coldkey: Keypair, hotkey_ss58: str, amount: int) -> None:
        await self.submit("remove_stake", coldkey, {"netuid": netuid, "hotkey": hotkey_ss58, "amount": amount})

    async def serve_axon(
        self, netuid: int, hotkey: Keypair, *, ip: str, port: int, protocol: int = 4, version: int = 0
    ) -> None:
        await self.submit(
            "serve_axon", hotkey, {"netuid": netuid, "ip": ip, "port": port, "protocol": protocol, "version": version}
        )

    async def set_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], version_key: int
    ) -> None:
        await self.submit(
            "set_weights", hotkey,
            {"netuid": netuid, "uids": list(uids), "weights": list(weights), "version_key": version_key},
        )

    async def commit_weights(self, netuid: int, hotkey: Keypair, commit_hash: bytes) -> None:
        await self.submit("commit_weights", hotkey, {"netuid": netuid, "commit_hash": commit_hash.hex()})

    async def reveal_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], salt: Sequence[int],
        version_key: int,
    ) -> None:
        await self.submit(
            "reveal_weights", hotkey,
            {"netuid": netuid, "uids": list(uids), "weights": list(weights), "salt": list(salt),
             "version_key": version_key},
        )

    async def commit_timelocked_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], version_key: int
    ) -> int:
        """The devnet has no drand beacon to reveal against: hash commit-reveal only."""
        raise ce.TimelockUnsupported()
