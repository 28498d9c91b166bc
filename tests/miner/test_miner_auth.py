"""Every refusal is a clear 4xx naming the check, and the miner keeps serving others."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.miner.conftest import MINER, NO_PERMIT, STRANGER, VALIDATOR, signed
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.epistula import sign_request, verify_response

CHAT = {"model": "upstream-echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def _ok(client: httpx.AsyncClient) -> None:
    raw, headers = signed(CHAT)
    response = await client.post("/v1/chat/completions", content=raw, headers=headers)
    assert response.status_code == 200, response.text


def _stale_headers(body: bytes, offset_ms: int) -> dict[str, str]:
    return sign_request(VALIDATOR, body, MINER.ss58_address, now_ms=int(time.time() * 1000) + offset_ms)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("forged", 401, "epistula_signature"),
        ("body_changed", 401, "epistula_signature"),
        ("stale", 401, "epistula_timestamp"),
        ("future", 401, "epistula_timestamp"),
        ("wrong_signed_for", 401, "epistula_signed_for"),
        ("missing_headers", 401, "epistula_headers"),
        ("unregistered", 403, "not_registered"),
        ("no_permit", 403, "no_validator_permit"),
        ("malformed_json", 400, "invalid_request"),
        ("bad_field", 400, "invalid_request"),
        ("unknown_model", 404, "not_found"),
        ("oversized", 413, "payload_too_large"),
    ],
)
async def test_refusals(make_miner: Any, upstream_engine: OpenAIUpstreamEngine, case: str, status: int, code: str) -> None:
    raw, headers = signed(CHAT)
    if case == "forged":
        headers = {**headers, "Epistula-Request-Signature": "0x" + STRANGER.sign(b"x").hex()}
    elif case == "body_changed":
        raw = raw.replace(b'"hi"', b'"ho"')
    elif case == "stale":
        headers = {**_stale_headers(raw, -120_000), "Content-Type": "application/json"}
    elif case == "future":
        headers = {**_stale_headers(raw, +120_000), "Content-Type": "application/json"}
    elif case == "wrong_signed_for":
        headers = sign_request(VALIDATOR, raw, STRANGER.ss58_address)
    elif case == "missing_headers":
        headers = {"Content-Type": "application/json"}
    elif case == "unregistered":
        raw, headers = signed(CHAT, STRANGER)
    elif case == "no_permit":
        raw, headers = signed(CHAT, NO_PERMIT)
    elif case == "malformed_json":
        raw, headers = signed(b"{not json")
    elif case == "bad_field":
        raw, headers = signed({**CHAT, "temperature": 9})
    elif case == "unknown_model":
        raw, headers = signed({**CHAT, "model": "gpt-17"})
    elif case == "oversized":
        raw, headers = signed({**CHAT, "messages": [{"role": "user", "content": "x" * 70_000}]})
    async with make_miner(upstream_engine) as client:
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert error["message"]
        if case == "bad_field":
            assert error["param"] == "temperature"
        await _ok(client)  # the miner keeps serving others


async def test_replayed_uuid_is_refused(make_miner: Any, upstream_engine: OpenAIUpstreamEngine) -> None:
    raw, headers = signed(CHAT)
    # capacity 4, stakes 3000 and 1000: this validator gets 3 requests per window
    async with make_miner(upstream_engine, capacity_per_window=4) as client:
        first = await client.post("/v1/chat/completions", content=raw, headers=headers)
        assert first.status_code == 200
        for _ in range(3):  # replays are refused before they take any quota
            again = await client.post("/v1/chat/completions", content=raw, headers=headers)
            assert again.status_code == 401 and again.json()["error"]["code"] == "epistula_replay"
        fresh = []
        for _ in range(3):
            raw, headers = signed(CHAT)
            fresh.append((await client.post("/v1/chat/completions", content=raw, headers=headers)).status_code)
        assert fresh == [200, 200, 429]
        # a request refused for quota was still seen: sent again it is a replay, not another 429
        again = await client.post("/v1/chat/completions", content=raw, headers=headers)
        assert again.status_code == 401 and again.json()["error"]["code"] == "epistula_replay"
        # the attestation endpoint keeps its own replay check
        raw, headers = signed({"nonce": "00" * 32})
        await client.post("/v1/attestation", content=raw, headers=headers)
        replayed = await client.post("/v1/attestation", content=raw, headers=headers)
        assert replayed.status_code == 401 and replayed.json()["error"]["code"] == "epistula_replay"


async def test_responses_are_signed_by_the_miner(make_miner: Any, upstream_engine: OpenAIUpstreamEngine) -> None:
    raw, headers = signed(CHAT)
    async with make_miner(upstream_engine) as client:
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
    assert response.json()["choices"][0]["message"]["content"] == "hello there"
    signer = verify_response(
        response.headers, response.content, request_uuid=headers["Epistula-Uuid"], caller=VALIDATOR.ss58_address,
        expected_signer=MINER.ss58_address,
    )
    assert signer == MINER.ss58_address


async def test_quota_is_stake_proportional_and_spent_gives_429(
    make_miner: Any, upstream_engine: OpenAIUpstreamEngine
) -> None:
    # capacity 8, stakes 3000 (Alice) and 1000 (Dave): Alice gets 6 per window, for all she sends (a header
    # that once marked challenges changes nothing: the miner has one quota per validator)
    async with make_miner(upstream_engine, capacity_per_window=8, window_seconds=60) as client:
        codes = []
        for i in range(6):
            raw, headers = signed(CHAT, **({"X-Veilnet-Traffic": "synthetic"} if i % 2 else {}))
            codes.append((await client.post("/v1/chat/completions", content=raw, headers=headers)).status_code)
        assert codes == [200] * 6
        raw, headers = signed(CHAT)
        spent = await client.post("/v1/chat/completions", content=raw, headers=headers)
        assert spent.status_code == 429
        assert 1 <= int(spent.headers["Retry-After"]) <= 60
        assert "quota spent" in spent.json()["error"]["message"]
        from tests.miner.conftest import SMALL_VALIDATOR

        raw, headers = signed(CHAT, SMALL_VALIDATOR)  # another validator still has its own quota
        assert (await client.post("/v1/chat/completions", content=raw, headers=headers)).status_code == 200


async def test_public_endpoints(make_miner: Any, upstream_engine: OpenAIUpstreamEngine) -> None:
    async with make_miner(upstream_engine, price_input_per_million=0.2, price_output_per_million=0.4) as client:
        models = (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["upstream-echo", "upstream-dying"]
        capacity = (await client.get("/capacity")).json()
        assert capacity["models"][0]["price_input_per_million"] == 0.2
        assert capacity["models"][0]["context_length"] == 8192
        assert (await client.get("/health")).json()["status"] == "ok"


def test_signed_body_is_exactly_the_bytes_sent() -> None:
    body = json.dumps(CHAT).encode()
    headers = sign_request(VALIDATOR, body, MINER.ss58_address)
    assert headers["Epistula-Signed-By"] == VALIDATOR.ss58_address
    assert headers["Epistula-Version"] == "2"
