"""The devnet chain over real HTTP on 127.0.0.1: signed extrinsics, typed errors, replay refusal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bittensor_wallet import Keypair
from tests.conftest import free_port, serve_asgi

from veilnet.chain import errors as ce
from veilnet.chain.interface import Chain
from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain, DevnetChainClient
from veilnet.devnet.chain.server import SIGNATURE_HEADER, create_chain_app

OWNER_C, OWNER_H = Keypair.create_from_uri("//HOwnerCold"), Keypair.create_from_uri("//HOwnerHot")
MINER_C, MINER_H = Keypair.create_from_uri("//HMinerCold"), Keypair.create_from_uri("//HMinerHot")


@pytest.fixture
async def chain_url(tmp_path: Path) -> AsyncIterator[str]:
    async with DevnetChain(tmp_path / "chain.sqlite3", block_time=0.05) as chain:
        async with serve_asgi(create_chain_app(chain), lifespan="off") as url:
            yield url


async def test_client_runs_a_subnet_over_http(chain_url: str) -> None:
    async with DevnetChainClient(chain_url) as chain:
        assert isinstance(chain, Chain)
        for cold in (OWNER_C, MINER_C):
            await chain.fund(cold.ss58_address, 1_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        await chain.sudo_set_hyperparameter(netuid, "tempo", 5)
        uid = await chain.burned_register(netuid, MINER_C, MINER_H.ss58_address)
        await chain.serve_axon(netuid, MINER_H, ip="127.0.0.1", port=8091)
        graph = await chain.get_metagraph(netuid)
        assert graph.neurons[uid].hotkey == MINER_H.ss58_address
        assert graph.neurons[uid].axon is not None and graph.neurons[uid].axon.url == "http://127.0.0.1:8091"
        assert (await chain.get_hyperparameters(netuid)).tempo == 5
        assert await chain.get_balance(MINER_C.ss58_address) < 1_000 * RAO_PER_TAO
        start = await chain.get_current_block()
        assert await chain.wait_for_block(start + 2, timeout=10) >= start + 2
        with pytest.raises(ce.HotKeyAlreadyRegisteredInSubNet):
            await chain.burned_register(netuid, MINER_C, MINER_H.ss58_address)
        with pytest.raises(ce.SubnetNotExists):
            await chain.get_metagraph(77)


async def test_forged_and_replayed_extrinsics_are_refused(chain_url: str) -> None:
    async with DevnetChainClient(chain_url) as chain:
        await chain.fund(OWNER_C.ss58_address, 1_000 * RAO_PER_TAO)
    body = json.dumps({"call": "register_subnet", "signer": OWNER_C.ss58_address, "nonce": 1,
                       "args": {"hotkey": OWNER_H.ss58_address}}).encode()
    async with httpx.AsyncClient(base_url=chain_url) as http:
        forged = await http.post("/extrinsic", content=body, headers={SIGNATURE_HEADER: MINER_C.sign(body).hex()})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "InvalidSignature"
        tampered = body.replace(b'"nonce": 1', b'"nonce": 2')
        changed = await http.post("/extrinsic", content=tampered, headers={SIGNATURE_HEADER: OWNER_C.sign(body).hex()})
        assert changed.status_code == 401
        signed = {SIGNATURE_HEADER: OWNER_C.sign(body).hex()}
        first = await http.post("/extrinsic", content=body, headers=signed)
        assert first.status_code == 200 and first.json()["result"] == 1
        replay = await http.post("/extrinsic", content=body, headers=signed)
        assert replay.status_code == 401 and "replay" in replay.json()["error"]["message"]
        bad = await http.post("/extrinsic", content=b"{nope", headers=signed)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidArgument"
        unknown = await http.post("/extrinsic", content=b'{"call": "sudo_everything"}', headers=signed)
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "UnknownCall"


async def test_unreachable_chain_is_chain_unavailable() -> None:
    async with DevnetChainClient(f"http://127.0.0.1:{free_port()}") as chain:
        with pytest.raises(ce.ChainUnavailable):
            await chain.get_current_block()


async def test_chain_serve_command_serves_and_persists(tmp_path: Path) -> None:
    import subprocess
    import sys

    port = free_port()
    argv = [sys.executable, "-m", "veilnet", "chain", "serve", "--port", str(port), "--data-dir", str(tmp_path),
            "--block-time", "0.05"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        async with DevnetChainClient(f"http://127.0.0.1:{port}") as chain:
            for _ in range(200):
                try:
                    block = await chain.wait_for_block(3, timeout=5)
                    break
                except ce.ChainUnavailable:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("veilnet chain serve did not come up")
            assert block >= 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (tmp_path / "chain.sqlite3").is_file()
