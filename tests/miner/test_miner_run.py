"""`veilnet miner run` end to end: a real process registers on the devnet chain, serves its axon, answers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from bittensor_wallet import Keypair

from tests.conftest import free_port, serve_asgi
from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain
from veilnet.devnet.chain.server import create_chain_app
from veilnet.protocol.epistula import sign_request, verify_response
from veilnet.wallet import create_wallet

OWNER_C, OWNER_H = Keypair.create_from_uri("//RunOwnerCold"), Keypair.create_from_uri("//RunOwnerHot")
VAL_C, VAL_H = Keypair.create_from_uri("//RunValCold"), Keypair.create_from_uri("//RunValHot")


@pytest.mark.model
async def test_miner_process_registers_serves_and_answers(tmp_path: Path, redis_url: str) -> None:
    miner_port = free_port()
    created = create_wallet(tmp_path / "wallets", "miner", password=None)
    async with DevnetChain(None, block_time=0.05) as chain, serve_asgi(create_chain_app(chain), lifespan="off") as chain_url:
        for cold in (OWNER_C, VAL_C):
            await chain.fund(cold.ss58_address, 1_000 * RAO_PER_TAO)
        await chain.fund(created.wallet.coldkeypub_ss58, 100 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        await chain.sudo_set_hyperparameter(netuid, "tempo", 5)
        await chain.sudo_set_hyperparameter(netuid, "max_regs_per_block", 8)
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 100 * RAO_PER_TAO)
        env = {
            **os.environ,
            "VEILNET_WALLET__PATH": str(tmp_path / "wallets"),
            "VEILNET_WALLET__NAME": "miner",
            "VEILNET_CHAIN__DEVNET_URL": chain_url,
            "VEILNET_CHAIN__NETUID": str(netuid),
            "VEILNET_REDIS__URL": redis_url,
            "VEILNET_DATA_DIR": str(tmp_path / "data"),
            "VEILNET_MINER__METAGRAPH_REFRESH_SECONDS": "0.5",
        }
        argv = [sys.executable, "-m", "veilnet", "miner", "run", "--port", str(miner_port), "--register"]
        log = (tmp_path / "miner.log").open("wb")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{miner_port}", timeout=60) as client:
                for _ in range(300):
                    if proc.poll() is not None:
                        pytest.fail(f"miner exited: {(tmp_path / 'miner.log').read_text()[-2000:]}")
                    try:
                        if (await client.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                graph = await chain.get_metagraph(netuid)
                miner = graph.by_hotkey(created.wallet.hotkey.ss58_address)
                assert miner is not None and miner.axon is not None and miner.axon.port == miner_port
                while not (await chain.get_metagraph(netuid)).by_hotkey(VAL_H.ss58_address).validator_permit:  # type: ignore[union-attr]
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.5)  # the miner refreshes its metagraph every 0.5 s here
                body = json.dumps({"model": "SmolLM2-135M-Instruct", "max_tokens": 4, "temperature": 0,
                                   "messages": [{"role": "user", "content": "Hi"}]}).encode()
                headers = sign_request(VAL_H, body, miner.hotkey)
                response = await client.post("/v1/chat/completions", content=body, headers=headers)
                assert response.status_code == 200, response.text
                verify_response(response.headers, response.content, request_uuid=headers["Epistula-Uuid"],
                                caller=VAL_H.ss58_address, expected_signer=miner.hotkey)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()
