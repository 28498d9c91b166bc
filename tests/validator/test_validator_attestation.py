"""Validators challenge miners' enclaves with fresh nonces and score attested capacity."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.conftest import serve_asgi
from tests.gateway.test_confidential_gateway import policy
from tests.miner.conftest import neuron, served_neuron

from veilnet.chain.types import Metagraph, NeuronInfo
from veilnet.confidential import (
    AttestedSessions,
    DevEnclaveProvider,
    Enclave,
    EvidenceVerifier,
    TrustAnchors,
    serving_code_sha256,
)
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.confidential import ModelMeasurement
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.validator.service import ValidatorContext, attest_miner

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
