"""A miner that sends malformed evidence is refused with a named reason and stops nobody: the verifier raises
only AttestationFailed (a verifier bug is refused as ``verifier_error``), and the confidential client skips
that miner for the next one, end to end through a real gateway."""

from __future__ import annotations

import base64
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.confidential.quote_surgery import pck_pems, with_certification_data
from tests.confidential.samples import tdx
from tests.conftest import serve_asgi
from tests.gateway.test_confidential_gateway import policy, rewrite
from tests.miner.conftest import fake_upstream_app, neuron, served_neuron
from veilnet.chain.types import Metagraph
from veilnet.client import ConfidentialClient, create_proxy_app
from veilnet.confidential import (
    AttestationFailed,
    AttestedSessions,
    DevEnclaveProvider,
    Enclave,
    EvidenceVerifier,
    TdxCollateralSource,
    TrustAnchors,
    serving_code_sha256,
)
from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.confidential import refresh_attestations
from veilnet.gateway.directory import MinerDirectory
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.confidential import Evidence, GpuEvidence, ModelMeasurement
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.keys import KeyStore
from veilnet.store.sql import open_database


def hostile_quotes() -> dict[str, bytes]:
    """Real quotes whose PCK certification data a hostile miner broke (the TD report's signatures intact)."""
    quote = tdx().quote
    pems = pck_pems(quote)
    return {
        "leaf-removed": with_certification_data(quote, 5, b"".join(pems[1:])),
        "chain-empty": with_certification_data(quote, 5, b""),
        "chain-reordered": with_certification_data(quote, 5, b"".join(reversed(pems))),
        "type-3": with_certification_data(quote, 3, bytes(390)),
        "truncated": quote[:1000],
    }


@pytest.mark.parametrize("name", sorted(hostile_quotes()))
async def test_malformed_tdx_evidence_is_a_named_refusal_at_the_verifier_boundary(
    name: str, make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    verifier = make_verifier()
    nonce = verifier.challenge()
    honest = await make_enclave().attest(nonce)
    hostile = honest.model_copy(update={"platform": "tdx", "quote": hostile_quotes()[name],
                                        "collateral": tdx().collateral})
    with pytest.raises(AttestationFailed) as refused:
        await verifier.verify(hostile, nonce)
    assert refused.value.code in ("evidence_malformed", "unsupported_evidence"), refused.value.message


async def test_garbage_in_every_evidence_field_is_a_named_refusal(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    garbage = [b"", b"\x00", bytes(range(256)), b"-----BEGIN CERTIFICATE-----\n", b"\xff" * 5000]
    verifier = make_verifier()
    variants: list[dict[str, Any]] = []
    for blob in garbage:
        variants += [
            {"platform": "tdx", "quote": blob},
            {"platform": "tdx", "quote": tdx().quote, "collateral": {"garbage": blob.hex()}},
            {"platform": "sev-snp", "quote": blob, "certificate_chain": blob.decode("latin-1")},
            {"platform": "sev-snp", "quote": bytes(1184), "certificate_chain": None},
            {"platform": "dev", "quote": blob},
            {"gpu": [GpuEvidence(report=blob, certificate_chain=blob.decode("latin-1"))]},
        ]
    for update in variants:
        nonce = verifier.challenge()
        evidence = (await make_enclave().attest(nonce)).model_copy(update=update)
        with pytest.raises(AttestationFailed) as refused:
            await verifier.verify(evidence, nonce)
        assert refused.value.code not in ("attestation_failed", "verifier_error"), (update.keys(), refused.value)


class BrokenCollateralSource(TdxCollateralSource):
    """A collateral source with a bug: it raises what no verifier names."""

    async def collateral(self, quote: bytes, fmspc: str, offered: dict[str, Any] | None) -> Any:
        return {}["missing"]


async def test_a_verifier_bug_is_refused_as_verifier_error_not_raised(
    make_enclave: Callable[..., Enclave], dev_key: Ed25519PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.confidential.conftest import dev_policy

    anchors = TrustAnchors(dev_enclave_keys=(dev_key.public_key(),), tdx_collateral=BrokenCollateralSource())
    verifier = EvidenceVerifier(dev_policy(), anchors)
    nonce = verifier.challenge()
    evidence = (await make_enclave().attest(nonce)).model_copy(update={"platform": "tdx", "quote": tdx().quote,
                                                                      "collateral": None})
    with pytest.raises(AttestationFailed) as refused:
        await verifier.verify(evidence, nonce)
    assert refused.value.code == "verifier_error" and "KeyError" in refused.value.message
    assert "attestation verifier error on tdx evidence" in caplog.text


# --- the client skips a miner whose evidence it cannot verify --------------------------------------------------

FIRST, SECOND = Keypair.create_from_uri("//HostileFirst"), Keypair.create_from_uri("//HonestSecond")
GATEWAY = Keypair.create_from_uri("//HostileEvidenceGateway")


def _hostile_to_clients(hotkey: str, quote: bytes) -> Callable[[str, bytes], bytes]:
    """The relay of ``hotkey``'s evidence to clients turned into TDX evidence with malformed certification data
    (a miner that answers the gateway's own challenges well and clients' badly)."""

    def swap(path: str, body: bytes) -> bytes:
        if not path.endswith("/confidential/attestation"):
            return body
        evidence = Evidence.model_validate_json(body)
        if evidence.keyset.hotkey != hotkey:
            return body
        data = json.loads(body)
        data.update(platform="tdx", quote=base64.b64encode(quote).decode(), collateral=tdx().collateral)
        return json.dumps(data).encode()

    return swap


@contextlib.asynccontextmanager
async def two_enclaves(tmp_path: Path, redis: aioredis.Redis, quote: bytes) -> AsyncIterator[dict[str, Any]]:
    dev_key = Ed25519PrivateKey.generate()
    anchors = TrustAnchors(dev_enclave_keys=(dev_key.public_key(),))
    models = ["upstream-echo"]
    async with contextlib.AsyncExitStack() as es:
        upstream = await es.enter_async_context(serve_asgi(fake_upstream_app()))
        engine = await es.enter_async_context(OpenAIUpstreamEngine(f"{upstream}/v1", models))
        validators = (neuron(0, GATEWAY, 1000, True),)
        neurons = [validators[0]]
        for uid, key in ((1, FIRST), (2, SECOND)):
            enclave = Enclave(key, DevEnclaveProvider(dev_key, {"code_sha256": serving_code_sha256()}),
                              [ModelMeasurement(id=m, weights_sha256="ab" * 32) for m in models],
                              code_sha256=serving_code_sha256())
            ctx = MinerContext(keypair=key, engine=engine, redis=redis,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)), settings=MinerSettings(),
                               epistula=EpistulaSettings(), enclave=enclave)
            url = await es.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            neurons.append(served_neuron(uid, key, url))
        http = await es.enter_async_context(aiohttp.ClientSession())
        directory = MinerDirectory(http, GATEWAY.ss58_address)
        await directory.refresh(Metagraph(1, 0, tuple(neurons)))
        sql = await es.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await es.enter_async_context(KeyStore(sql))
        secret, _ = await keys.create("tests", credit_usd=10.0)

        async def scores() -> dict[str, float]:  # the hostile miner is listed first
            return {FIRST.ss58_address: 0.9, SECOND.ss58_address: 0.5}

        gw = GatewayContext(keypair=GATEWAY, keys=keys, directory=directory, http=http, scores=scores,
                            relay=await es.enter_async_context(RelayClient()), rng=random.Random(0),
                            attestations=AttestedSessions(EvidenceVerifier(policy(), anchors)))
        assert await refresh_attestations(gw) == {}  # both answer the gateway's own challenge well
        app = rewrite(create_gateway_app(gw), response=_hostile_to_clients(FIRST.ss58_address, quote))
        gateway = await es.enter_async_context(serve_asgi(app, lifespan="off"))
        client = await es.enter_async_context(ConfidentialClient(f"{gateway}/v1", secret,
                                                                 EvidenceVerifier(policy(), anchors)))
        proxy = await es.enter_async_context(serve_asgi(create_proxy_app(client), lifespan="off"))
        sdk = openai.AsyncOpenAI(base_url=f"{proxy}/v1", api_key=secret, max_retries=0)
        yield {"client": client, "sdk": sdk}
        await sdk.close()


@pytest.mark.parametrize("name", ["leaf-removed", "type-3"])
async def test_the_client_tries_the_next_miner_when_one_sends_malformed_evidence(
    name: str, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with two_enclaves(tmp_path, redis_client, hostile_quotes()[name]) as s:
        client: ConfidentialClient = s["client"]
        chosen = await client.attested_miner("upstream-echo")
        assert chosen.hotkey == SECOND.ss58_address
        assert client.sessions.get(FIRST.ss58_address) is None
        answer = await s["sdk"].chat.completions.create(model="upstream-echo",
                                                        messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "hello there"
        assert answer.model_extra["veilnet"]["miner"] == SECOND.ss58_address  # type: ignore[index]
