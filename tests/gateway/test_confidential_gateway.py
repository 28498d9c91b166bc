"""Confidential routing end to end: the official openai SDK -> the confidential proxy -> the gateway ->
a miner's development enclave -> a real loopback upstream, and each refusal a hostile party could cause."""

from __future__ import annotations

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
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tests.conftest import free_port, serve_asgi
from tests.miner.conftest import fake_upstream_app, neuron, served_neuron

from veilnet.chain.types import Metagraph
from veilnet.client import ConfidentialClient, create_proxy_app
from veilnet.confidential import (
    AttestedSessions,
    DevEnclaveProvider,
    Enclave,
    EvidenceVerifier,
    MeasurementPolicy,
    PlatformRule,
    TrustAnchors,
    serving_code_sha256,
)
from veilnet.confidential.enclave import EnclaveKeyPair
from veilnet.confidential.keyset import sign_keyset
from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.confidential import refresh_attestations
from veilnet.gateway.directory import MinerDirectory
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.confidential import Keyset, ModelMeasurement
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.keys import KeyStore
from veilnet.store.organic import OrganicStream
from veilnet.store.ratelimit import KeyRateLimiter
from veilnet.store.sql import open_database

GATEWAY = Keypair.create_from_uri("//ConfGateway")
ENCLAVE_MINER, PLAIN_MINER = Keypair.create_from_uri("//ConfMinerTee"), Keypair.create_from_uri("//ConfMinerPlain")
BUSY_MINER = Keypair.create_from_uri("//ConfMinerBusy")  # attested, and answers every chat request with 503
MODELS = ["upstream-echo", "upstream-slow"]
SECRET = "my bank password is hunter2"


def policy(**overrides: Any) -> MeasurementPolicy:
    return MeasurementPolicy.model_validate({
        "id": "e2e", "version": 2, "allow_simulated": True,
        "platforms": {"dev": PlatformRule(measurements=[{"code_sha256": serving_code_sha256()}],
                                          tcb_status=["Simulated"])},
        **overrides,
    })


def rewrite(app: ASGIApp, *, request: Callable[[str, bytes], bytes] | None = None,
            response_headers: Callable[[str, list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]] | None = None,
            response: Callable[[str, bytes], bytes] | None = None) -> ASGIApp:
    """A hostile hop: rewrites request bodies, response headers or (whole, unstreamed) response bodies."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path = scope["path"]
        if request is not None:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            body = request(path, body)
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            downstream_receive: Receive = replay
        else:
            downstream_receive = receive
        held: list[Message] = []

        async def forward(message: Message) -> None:
            if message["type"] == "http.response.start" and response_headers is not None:
                message = {**message, "headers": response_headers(path, list(message["headers"]))}
            if response is None:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                start, *bodies = held
                data = response(path, b"".join(m.get("body", b"") for m in bodies))
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(data)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": data})

        await app(scope, downstream_receive, forward)

    return wrapped


def busy(app: ASGIApp) -> ASGIApp:
    """``app`` whose backend is full: every chat request is refused with 503."""
    refusal = json.dumps({"error": {"message": "backend is full", "type": "overloaded", "param": None,
                                    "code": "overloaded"}}).encode()

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(refusal)).encode())]})
        await send({"type": "http.response.body", "body": refusal})

    return wrapped


@contextlib.asynccontextmanager
async def subnet(tmp_path: Path, redis: aioredis.Redis, *, miner_hop: Callable[[ASGIApp], ASGIApp] = lambda a: a,
                 gateway_hop: Callable[[ASGIApp], ASGIApp] = lambda a: a,
                 client_policy: MeasurementPolicy | None = None,
                 request_timeout: float = 120.0, rpm: int = 0, busy_enclave: bool = False,
                 ) -> AsyncIterator[dict[str, Any]]:
    dev_key = Ed25519PrivateKey.generate()
    anchors = TrustAnchors(dev_enclave_keys=(dev_key.public_key(),))
    async with contextlib.AsyncExitStack() as es:
        upstream = await es.enter_async_context(serve_asgi(fake_upstream_app()))
        engine = await es.enter_async_context(OpenAIUpstreamEngine(f"{upstream}/v1", MODELS))
        validators = (neuron(0, GATEWAY, 1000, True),)
        urls = {}
        miners = (ENCLAVE_MINER, PLAIN_MINER, *((BUSY_MINER,) if busy_enclave else ()))
        hops = {ENCLAVE_MINER: miner_hop, BUSY_MINER: busy}
        for key in miners:
            enclave = None
            if key is not PLAIN_MINER:
                enclave = Enclave(key, DevEnclaveProvider(dev_key, {"code_sha256": serving_code_sha256()}),
                                  [ModelMeasurement(id=m, weights_sha256="ab" * 32) for m in MODELS],
                                  code_sha256=serving_code_sha256())
            ctx = MinerContext(keypair=key, engine=engine, redis=redis,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                               settings=MinerSettings(price_input_per_million=1.0, price_output_per_million=2.0),
                               epistula=EpistulaSettings(), enclave=enclave)
            app = create_miner_app(ctx)
            urls[key.ss58_address] = await es.enter_async_context(
                serve_asgi(hops.get(key, lambda a: a)(app), lifespan="off"))
        neurons = [validators[0]]
        for uid, key in enumerate(miners, 1):
            neurons.append(served_neuron(uid, key, urls[key.ss58_address]))
        http = await es.enter_async_context(aiohttp.ClientSession())
        directory = MinerDirectory(http, GATEWAY.ss58_address)
        await directory.refresh(Metagraph(1, 0, tuple(neurons)))
        sql = await es.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await es.enter_async_context(KeyStore(sql))
        secret, api_key = await keys.create("tests", credit_usd=10.0)

        async def scores() -> dict[str, float]:
            return {key.ss58_address: 0.5 for key in miners}

        ctx = GatewayContext(keypair=GATEWAY, keys=keys, directory=directory, http=http, scores=scores,
                             relay=await es.enter_async_context(RelayClient()),
                             rng=random.Random(0), request_timeout=request_timeout,
                             organic=await es.enter_async_context(OrganicStream(redis, 1, sample_rate=1.0)),
                             ratelimit=await es.enter_async_context(KeyRateLimiter(redis, requests_per_minute=rpm, tokens_per_minute=0)),
                             attestations=AttestedSessions(EvidenceVerifier(policy(), anchors)))
        assert await refresh_attestations(ctx) == {}
        gateway = await es.enter_async_context(serve_asgi(gateway_hop(create_gateway_app(ctx)), lifespan="off"))
        client = await es.enter_async_context(
            ConfidentialClient(f"{gateway}/v1", None, EvidenceVerifier(client_policy or policy(), anchors)))
        proxy = await es.enter_async_context(serve_asgi(create_proxy_app(client), lifespan="off"))
        sdk = openai.AsyncOpenAI(base_url=f"{proxy}/v1", api_key=secret, max_retries=0)
        direct = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=secret, max_retries=0)
        yield {"sdk": sdk, "direct": direct, "keys": keys, "key": api_key, "secret": secret, "ctx": ctx, "client": client,
               "organic": ctx.organic}
        await sdk.close()
        await direct.close()


def _hello(content: str = SECRET) -> list[Any]:
    return [{"role": "user", "content": content}]


async def test_openai_sdk_through_the_proxy_end_to_end(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    seen: list[bytes] = []

    def spy(path: str, body: bytes) -> bytes:
        seen.append(body)
        return body

    async with subnet(tmp_path, redis_client, gateway_hop=lambda app: rewrite(app, request=spy)) as s:
        sdk: openai.AsyncOpenAI = s["sdk"]
        raw = await sdk.chat.completions.with_raw_response.create(model="upstream-echo", messages=_hello())
        completion = raw.parse()
        assert completion.choices[0].message.content == "hello there"
        assert raw.headers["X-Veilnet-Simulated"] == "true"
        provenance = completion.model_extra["veilnet"]
        assert provenance["miner"] == ENCLAVE_MINER.ss58_address and provenance["simulated"] is True
        assert provenance["receipt"]["completion_tokens"] == 2
        stream = await sdk.chat.completions.create(model="upstream-echo", messages=_hello(), stream=True)
        text = ""
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        assert text == "hello there"
        models = await sdk.models.list()
        assert {m.id for m in models.data} == set(MODELS)
        # the gateway carried ciphertext only, never sampled it for validators, and billed from receipts
        posts = [b for b in seen if b]
        assert posts and not any(SECRET.encode() in b or b"hunter2" in b for b in posts)
        assert await s["organic"].read() == []
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [r.status for r in rows] == ["ok", "ok"]
        assert {r.miner for r in rows} == {ENCLAVE_MINER.ss58_address}
        assert rows[0].completion_tokens in (2, 3) and all(r.cost_usd > 0 for r in rows)
        # attestation is verified once per session, not per request
        assert len(s["client"].sessions.fresh()) == 1


async def test_provider_confidential_required_routes_to_attested_miners_only(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with subnet(tmp_path, redis_client) as s:
        direct: openai.AsyncOpenAI = s["direct"]
        for _ in range(4):
            raw = await direct.chat.completions.with_raw_response.create(
                model="upstream-echo", messages=_hello(), extra_body={"provider": {"confidential": "required"}})
            assert raw.parse().choices[0].message.content == "hello there"
            assert raw.headers["X-Veilnet-Simulated"] == "true"
        stream = await direct.chat.completions.create(model="upstream-echo", messages=_hello(), stream=True,
                                                      extra_body={"provider": {"confidential": "required"}})
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "hello there"
        rows = await s["keys"].usage_rows(s["key"].id)
        assert {r.miner for r in rows} == {ENCLAVE_MINER.ss58_address} and len(rows) == 5
        assert await s["organic"].read() == []
        with pytest.raises(openai.NotFoundError) as restricted:
            await direct.chat.completions.create(
                model="upstream-echo", messages=_hello(),
                extra_body={"provider": {"confidential": "required", "attestation": {"platforms": ["tdx"]}}})
        assert restricted.value.body["code"] == "privacy_restricted"  # type: ignore[index]
        raw = await direct.chat.completions.with_raw_response.create(
            model="upstream-echo", messages=_hello(),
            extra_body={"provider": {"confidential": "preferred", "attestation": {"gpu_required": True}}})
        assert raw.parse().choices[0].message.content == "hello there"  # no GPU-attested miner: plain fallback


async def test_key_substitution_by_the_gateway_is_refused_by_the_client(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    def swap_key(path: str, body: bytes) -> bytes:
        if not path.endswith("/confidential/attestation"):
            return body
        evidence = json.loads(body)
        swapped = Keyset.model_validate(evidence["keyset"]).model_copy(
            update={"hpke_public_key": EnclaveKeyPair.generate().public_bytes})
        # even re-signed with the real hotkey, the swapped keys do not match the report_data
        evidence["keyset"] = json.loads(sign_keyset(swapped, ENCLAVE_MINER).model_dump_json())
        return json.dumps(evidence).encode()

    async with subnet(tmp_path, redis_client, gateway_hop=lambda app: rewrite(app, response=swap_key)) as s:
        with pytest.raises(openai.APIStatusError) as refused:
            await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert refused.value.status_code == 502
        assert refused.value.body["code"] == "attestation_failed"  # type: ignore[index]
        assert "report_data does not bind" in refused.value.body["message"]  # type: ignore[index]
        assert await s["keys"].usage_rows(s["key"].id) == []


async def test_model_swapped_in_the_envelope_does_not_open(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    def swap_model(path: str, body: bytes) -> bytes:
        if path != "/v1/chat/completions" or not body:
            return body
        data = json.loads(body)
        data["sealed"]["model"] = "upstream-slow"  # both are attested; the associated data is not
        return json.dumps(data).encode()

    async with subnet(tmp_path, redis_client, gateway_hop=lambda app: rewrite(app, request=swap_model)) as s:
        with pytest.raises(openai.BadRequestError) as refused:
            await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert refused.value.body["code"] == "decryption_failed"  # type: ignore[index]


async def test_plaintext_downgrade_by_the_miner_is_refused(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    def strip(path: str, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in headers if k.lower() != b"x-veilnet-encryption"]

    async with subnet(tmp_path, redis_client, miner_hop=lambda app: rewrite(app, response_headers=strip)) as s:
        with pytest.raises(openai.APIStatusError) as refused:
            await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert refused.value.status_code == 502
        assert refused.value.body["code"] == "plaintext_downgrade"  # type: ignore[index]


async def test_dev_enclave_refused_when_the_client_does_not_allow_it(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with subnet(tmp_path, redis_client, client_policy=policy(allow_simulated=False)) as s:
        with pytest.raises(openai.APIStatusError) as refused:
            await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert refused.value.status_code == 502
        assert "allow_simulated is off" in refused.value.body["message"]  # type: ignore[index]


async def test_proxy_names_an_unreachable_gateway_instead_of_failing_with_500() -> None:
    gone = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    async with ConfidentialClient(gone, "vn-x", EvidenceVerifier(policy(), TrustAnchors())) as client, \
            serve_asgi(create_proxy_app(client), lifespan="off") as proxy:
        sdk = openai.AsyncOpenAI(base_url=f"{proxy}/v1", api_key="vn-x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            await sdk.chat.completions.create(model="upstream-echo", messages=_hello())
        await sdk.close()
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "upstream_error"  # type: ignore[index]
    assert gone in failed.value.body["message"]  # type: ignore[index]


async def test_an_inflated_receipt_is_refused_by_the_client_and_not_billed_by_the_gateway(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    def inflate(path: str, body: bytes) -> bytes:
        if path != "/v1/chat/completions":
            return body
        if body.startswith(b"{"):  # a sealed answer: one frame and the receipt
            answer = json.loads(body)
            answer["receipt"]["completion_tokens"] = 1000
            return json.dumps(answer).encode()
        lines = [json.dumps({"receipt": {**json.loads(line[6:])["receipt"], "completion_tokens": 1000}}).encode()
                 if line.startswith(b'data: {"receipt"') else line for line in body.split(b"\n")]
        return b"\n".join(lines)

    async with subnet(tmp_path, redis_client, miner_hop=lambda app: rewrite(app, response=inflate)) as s:
        for _ in range(2):
            with pytest.raises(openai.APIStatusError) as refused:
                await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
            assert refused.value.status_code == 502
            assert refused.value.body["code"] == "receipt_invalid"  # type: ignore[index]
        stream = await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello(), stream=True)
        with pytest.raises(openai.APIError) as broken:
            async for _ in stream:
                pass
        assert "receipt" in str(broken.value)
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [r.status for r in rows] == ["error"] * 3
        assert all(r.cost_usd == 0 and r.completion_tokens == 0 for r in rows)
        assert rows[0].error is not None and "usage receipt" in rows[0].error
        # three bad answers in a row: the enclave miner cools down like any failing miner
        assert s["ctx"].breaker.states()[ENCLAVE_MINER.ss58_address] == "open"


async def test_a_sealed_request_the_enclave_does_not_answer_in_time_is_a_408(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with subnet(tmp_path, redis_client, request_timeout=0.2) as s:  # upstream-slow answers after 0.5 s
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as timed_out:
                await s["sdk"].chat.completions.create(model="upstream-slow", messages=_hello(), stream=stream)
            assert timed_out.value.status_code == 408
            assert timed_out.value.body["code"] == "request_timeout"  # type: ignore[index]
            assert "did not answer within 0.2 s" in timed_out.value.body["message"]  # type: ignore[index]
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [(r.status, r.error, r.cost_usd) for r in rows] == [("error", "miner timed out", 0.0)] * 2
        answer = await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert answer.choices[0].message.content == "hello there"


async def test_a_sealed_request_an_enclave_cannot_serve_is_sealed_again_to_the_next(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with subnet(tmp_path, redis_client, busy_enclave=True) as s:
        client: ConfidentialClient = s["client"]
        chosen = await client.attested_miner("upstream-echo", api_key=s["secret"],
                                             avoid=frozenset({ENCLAVE_MINER.ss58_address}))
        assert chosen.hotkey == BUSY_MINER.ss58_address  # the proxy's choice for the next requests
        answer = await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert answer.choices[0].message.content == "hello there"
        assert answer.model_extra["veilnet"]["miner"] == ENCLAVE_MINER.ss58_address
        stream = await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello(), stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "hello there"
        # the busy enclave was asked once; the stream went straight to the one that answered
        rows = await s["keys"].usage_rows(s["key"].id)
        assert sorted(r.status for r in rows) == ["error", "ok", "ok"]
        assert {r.miner for r in rows if r.status == "ok"} == {ENCLAVE_MINER.ss58_address}


async def test_a_gateway_replaying_a_sealed_request_is_refused_by_the_enclave(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    captured: list[bytes] = []

    def replay(path: str, body: bytes) -> bytes:
        if path != "/v1/chat/completions":
            return body
        captured.append(body)
        return captured[0]  # every later request is swapped for the first one, re-sent as it was

    async with subnet(tmp_path, redis_client, gateway_hop=lambda app: rewrite(app, request=replay)) as s:
        answer = await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert answer.choices[0].message.content == "hello there"
        with pytest.raises(openai.BadRequestError) as refused:
            await s["sdk"].chat.completions.create(model="upstream-echo", messages=_hello())
        assert refused.value.body["code"] == "request_replayed"  # type: ignore[index]
        assert "already served" in refused.value.body["message"]  # type: ignore[index]


async def test_a_sealed_stream_left_early_is_billed_from_the_frames_relayed(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    import asyncio

    async with subnet(tmp_path, redis_client) as s:
        client: ConfidentialClient = s["client"]
        secret, key = await s["keys"].create("leaver", credit_usd=1.0)
        lines = await client.open("chat.completions", {"model": "upstream-echo", "messages": _hello(), "stream": True,
                                                       "user": "slow-stream"}, api_key=secret)
        assert not isinstance(lines, dict)
        assert b'"hel"' in await anext(lines)  # the first frame, opened; the miner waits before the next
        await lines.aclose()  # the client leaves before the final frame and the receipt
        for _ in range(100):
            rows = await s["keys"].usage_rows(key.id)
            if rows:
                break
            await asyncio.sleep(0.02)
        assert [(r.status, r.completion_tokens, r.prompt_tokens) for r in rows] == [("client_disconnected", 1, 0)]
        assert rows[0].cost_usd == pytest.approx(2.0 / 1e6)  # one completion token at the miner's price
        assert rows[0].error == "usage estimated: the client left before the enclave's receipt arrived"


async def test_the_proxy_answers_with_the_gateways_status_and_retry_after(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """The confidential client reads the gateway's errors back through the registry the gateway answered
    with, so the proxy in front of it answers the same status, code and Retry-After."""
    import asyncio
    import time

    async with subnet(tmp_path, redis_client, rpm=3) as s:
        sdk: openai.AsyncOpenAI = s["sdk"]
        with pytest.raises(openai.APIStatusError) as too_large:  # sealed, it exceeds the gateway's 4 MiB
            await sdk.chat.completions.create(model="upstream-echo", messages=_hello("x" * (3 << 20)))
        assert too_large.value.status_code == 413
        assert too_large.value.body["code"] == "payload_too_large"  # type: ignore[index]
        # a second key: its requests are counted per minute, so its few quick ones stay within one
        secret, _ = await s["keys"].create("limited", credit_usd=1.0)
        limited_sdk = openai.AsyncOpenAI(base_url=str(sdk.base_url), api_key=secret, max_retries=0)
        left = 60 - time.time() % 60
        if left < 10:
            await asyncio.sleep(left + 0.5)
        for _ in range(3):  # the miner's attestation is the client's already: one gateway request each
            answer = await limited_sdk.chat.completions.create(model="upstream-echo", messages=_hello())
            assert answer.choices[0].message.content == "hello there"
        with pytest.raises(openai.RateLimitError) as limited:
            await limited_sdk.chat.completions.create(model="upstream-echo", messages=_hello())
        await limited_sdk.close()
        assert limited.value.body["code"] == "rate_limited"  # type: ignore[index]
        proxy_says = int(limited.value.response.headers["Retry-After"])
        assert proxy_says > 1  # the rest of the gateway's minute, not a made-up second
        direct = openai.AsyncOpenAI(base_url=str(s["direct"].base_url), api_key=secret, max_retries=0)
        with pytest.raises(openai.RateLimitError) as told:
            await direct.chat.completions.create(model="upstream-echo", messages=_hello())
        await direct.close()
        assert abs(proxy_says - int(told.value.response.headers["Retry-After"])) <= 1
