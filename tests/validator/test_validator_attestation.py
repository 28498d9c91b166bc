"""Validators challenge miners' enclaves with fresh nonces and score attested capacity."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.confidential.samples import tdx
from tests.confidential.test_hostile_evidence import hostile_quotes
from tests.conftest import serve_asgi
from tests.gateway.test_confidential_gateway import policy
from tests.miner.conftest import neuron, served_neuron

from veilnet.chain.types import RAO_PER_TAO, Metagraph, NeuronInfo
from veilnet.confidential import (
    AttestedSessions,
    DevEnclaveProvider,
    Enclave,
    EvidenceVerifier,
    TrustAnchors,
    serving_code_sha256,
)
from veilnet.devnet.chain import DevnetChain
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.confidential import Evidence, Keyset, ModelMeasurement, Platform
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.validator.asking import challenge_client
from veilnet.validator.service import ValidatorContext, attest_miner, run_challenger

VALIDATOR = Keypair.create_from_uri("//AttestingValidator")
TEE, PLAIN, BORROWER = (Keypair.create_from_uri(f"//AttMiner{n}") for n in ("Tee", "Plain", "Borrower"))


@contextlib.asynccontextmanager
async def miners(redis: aioredis.Redis, dev_key: Ed25519PrivateKey) -> AsyncIterator[dict[str, NeuronInfo]]:
    validators = (neuron(0, VALIDATOR, 1000, True),)
    async with contextlib.AsyncExitStack() as es:
        engine = await es.enter_async_context(OpenAIUpstreamEngine("http://127.0.0.1:9/v1", ["m"]))
        out = {}
        for uid, key in enumerate((TEE, PLAIN, BORROWER), start=1):
            enclave = None
            if key is not PLAIN:
                # the borrower serves an enclave whose keyset names (and is signed by) the TEE miner's hotkey
                owner = TEE if key is BORROWER else key
                enclave = Enclave(owner, DevEnclaveProvider(dev_key, {"code_sha256": serving_code_sha256()}),
                                  [ModelMeasurement(id="m", weights_sha256="ab" * 32)],
                                  code_sha256=serving_code_sha256())
            ctx = MinerContext(keypair=key, engine=engine, redis=redis,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)), settings=MinerSettings(),
                               epistula=EpistulaSettings(), enclave=enclave)
            url = await es.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            out[key.ss58_address] = served_neuron(uid, key, url)
        yield out


async def test_validator_scores_attested_capacity(redis_client: aioredis.Redis) -> None:
    dev_key = Ed25519PrivateKey.generate()
    verifier = EvidenceVerifier(policy(), TrustAnchors(dev_enclave_keys=(dev_key.public_key(),)))
    async with miners(redis_client, dev_key) as neurons, aiohttp.ClientSession() as http:
        ctx = ValidatorContext(keypair=VALIDATOR, chain=None, netuid=1, reference=None, http=http,  # type: ignore[arg-type]
                               scores=ScoreStore(redis_client, VALIDATOR.ss58_address, 1),
                               settings=ValidatorSettings(), attestations=AttestedSessions(verifier),
                               pipeline=ValidatorPipeline(redis_client, VALIDATOR.ss58_address, 1))
        tee = await attest_miner(ctx, neurons[TEE.ss58_address])
        assert tee is not None and tee.attested is True and tee.outcome == "ok"
        assert await attest_miner(ctx, neurons[PLAIN.ss58_address]) is None  # offers no confidential serving
        borrowed = await attest_miner(ctx, neurons[BORROWER.ss58_address])
        assert borrowed is not None and borrowed.attested is False and borrowed.outcome == "error"
        claims: Any = ctx.attestations.get(TEE.ss58_address)  # type: ignore[union-attr]
        assert claims is not None and claims.claims.simulated
        assert ctx.attestations.get(BORROWER.ss58_address) is None  # type: ignore[union-attr]


@dataclass
class MalformedTdxProvider:
    """A hostile miner's enclave: a real TDX quote whose PCK certification data it broke."""

    quote: bytes
    platform: Platform = "tdx"

    async def evidence(self, report_data: bytes, gpu_nonce: bytes, keyset: Keyset) -> Evidence:
        return Evidence(platform="tdx", quote=self.quote, collateral=tdx().collateral, keyset=keyset)


HOSTILE = Keypair.create_from_uri("//AttMinerHostile")
OWNER_C, OWNER_H, VAL_C = (Keypair.create_from_uri(f"//AttSurvive{n}") for n in ("OwnerCold", "OwnerHot", "ValCold"))
HONEST_C, HOSTILE_C = Keypair.create_from_uri("//AttSurviveTeeCold"), Keypair.create_from_uri("//AttSurviveBadCold")


@pytest.mark.parametrize("variant", ["leaf-removed", "type-3"])
async def test_a_miner_serving_malformed_evidence_cannot_stop_the_validator(
    variant: str, redis_client: aioredis.Redis
) -> None:
    quote = hostile_quotes()[variant]
    dev_key = Ed25519PrivateKey.generate()
    verifier = EvidenceVerifier(policy(), TrustAnchors(dev_enclave_keys=(dev_key.public_key(),)))
    async with DevnetChain(None, block_time=0.1) as chain, contextlib.AsyncExitStack() as stack, \
            aiohttp.ClientSession() as http, RelayClient() as relay:
        engine = await stack.enter_async_context(OpenAIUpstreamEngine("http://127.0.0.1:9/v1", ["m"]))
        for cold in (OWNER_C, VAL_C, HONEST_C, HOSTILE_C):
            await chain.fund(cold.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        for name, value in (("tempo", 10), ("max_regs_per_block", 10), ("target_regs_per_interval", 10)):
            await chain.sudo_set_hyperparameter(netuid, name, value)
        await chain.burned_register(netuid, VAL_C, VALIDATOR.ss58_address)
        await chain.add_stake(netuid, VAL_C, VALIDATOR.ss58_address, 1_000 * RAO_PER_TAO)
        providers = {TEE: DevEnclaveProvider(dev_key, {"code_sha256": serving_code_sha256()}),
                     HOSTILE: MalformedTdxProvider(quote)}
        for cold, hot in ((HONEST_C, TEE), (HOSTILE_C, HOSTILE)):
            await chain.burned_register(netuid, cold, hot.ss58_address)
            enclave = Enclave(hot, providers[hot], [ModelMeasurement(id="m", weights_sha256="ab" * 32)],
                              code_sha256=serving_code_sha256())
            # the miners know the validator (its permit on chain comes with the next epoch)
            validators = Metagraph(netuid, 0, (neuron(0, VALIDATOR, 1000, True),))
            ctx = MinerContext(keypair=hot, engine=engine, redis=redis_client, settings=MinerSettings(),
                               metagraph=MetagraphHolder(validators), epistula=EpistulaSettings(), enclave=enclave)
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            await chain.serve_axon(netuid, hot, ip="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        validator = ValidatorContext(keypair=VALIDATOR, chain=chain, netuid=netuid, reference=None, http=http,
                                     scores=ScoreStore(redis_client, VALIDATOR.ss58_address, netuid),
                                     settings=ValidatorSettings(), attestations=AttestedSessions(verifier),
                                     pipeline=ValidatorPipeline(redis_client, VALIDATOR.ss58_address, netuid),
                                     miners=challenge_client(VALIDATOR, relay))
        hostile = next(n for n in (await chain.get_metagraph(netuid)).neurons if n.hotkey == HOSTILE.ss58_address)
        refused = await attest_miner(validator, hostile)  # a refusal with a reason, not an exception
        assert refused is not None and refused.attested is False and refused.outcome == "error"
        challenger = asyncio.create_task(run_challenger(validator, round_interval=0.2))
        try:
            attested: dict[str, set[bool | None]] = {}
            for _ in range(100):
                await asyncio.sleep(0.1)
                assert not challenger.done(), challenger.exception()  # still challenging
                observations, _ = await validator.pipeline.take_observations()
                for o in observations:
                    if o.task == "attestation":
                        attested.setdefault(o.miner, set()).add(o.attested)
                if len(attested) == 2 and sum(len(v) for v in attested.values()) >= 2:
                    break
        finally:
            challenger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await challenger
    assert attested == {TEE.ss58_address: {True}, HOSTILE.ss58_address: {False}}
