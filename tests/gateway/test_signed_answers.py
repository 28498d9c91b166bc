"""The pieces of organic verification and billing that need no model: the bill is the smaller count, a
signed answer is read back only when the miner's signature checks (real sr25519 keys), a stream's SSE body
adds up to its answer, and the verifier's draw follows its rate (real Redis)."""

from __future__ import annotations

import base64
import json
import random

import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair

from veilnet.gateway.recount import billed_usage
from veilnet.gateway.verification import OrganicVerifier, signed_answer
from veilnet.protocol.epistula import StreamSigner, sign_response
from veilnet.protocol.usage import Usage
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.tasks.stream import assemble_sse_body
from veilnet.validator.audit import signed_answer_document

MINER, GATEWAY = Keypair.create_from_uri("//SignedMiner"), Keypair.create_from_uri("//SignedGateway")
ANSWER = {"object": "chat.completion", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
          "message": {"role": "assistant", "content": "Paris."}}], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}


def test_the_bill_is_the_smaller_count() -> None:
    claim = Usage(prompt_tokens=300, completion_tokens=120, total_tokens=420)
    assert billed_usage(claim, (30, 12)).model_dump(exclude_none=True) == {
        "prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    honest = Usage(prompt_tokens=29, completion_tokens=12, total_tokens=41)
    assert billed_usage(honest, (30, 13)).prompt_tokens == 29  # never more than the miner asked
    assert billed_usage(claim, None) is claim  # no count of its own: the claim (bounded elsewhere)


def test_a_signed_body_reads_back_only_when_the_signature_checks() -> None:
    body = json.dumps(ANSWER).encode()
    headers = sign_response(MINER, body, "uuid-1", GATEWAY.ss58_address)
    signed = signed_answer("body", body, "uuid-1", GATEWAY.ss58_address, {**headers, "Content-Type": "x"})
    assert set(signed.headers) == set(headers)  # only the Epistula headers travel
    assert signed_answer_document(signed, MINER.ss58_address) == ANSWER
    other = Keypair.create_from_uri("//SomeoneElse").ss58_address
    assert "signature" in str(signed_answer_document(signed, other))
    forged = signed.model_copy(update={"body": base64.b64encode(body.replace(b"Paris", b"Rome.")).decode()})
    assert "signature" in str(signed_answer_document(forged, MINER.ss58_address))
    # signed for another request: not this answer
    assert isinstance(signed_answer_document(signed.model_copy(update={"request_uuid": "uuid-2"}),
                                             MINER.ss58_address), str)
    assert signed_answer_document(signed.model_copy(update={"body": "%%%"}), MINER.ss58_address) \
        == "the signed answer is not base64"


def test_a_signed_stream_reads_back_as_its_answer() -> None:
    signer = StreamSigner(MINER, "uuid-s", GATEWAY.ss58_address)
    chunks = [{"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Par"}}]},
              {"model": "m", "choices": [{"index": 0, "delta": {"content": "is."}, "finish_reason": "stop"}]},
              {"model": "m", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}]
    body = b"".join(signer.feed(b"data: " + json.dumps(c).encode() + b"\n\n") for c in chunks)
    body += signer.feed(b"data: not json\n\n") + signer.feed(b"data: [DONE]\n\n") + signer.final_line()
    signed = signed_answer("stream", body, "uuid-s", GATEWAY.ss58_address)
    answer = signed_answer_document(signed, MINER.ss58_address)
    assert isinstance(answer, dict)
    assert answer["choices"][0]["message"]["content"] == "Paris."
    assert answer["choices"][0]["finish_reason"] == "stop" and answer["usage"]["completion_tokens"] == 3
    assert answer == assemble_sse_body(body[:body.rfind(b": epistula")])
    cut = signed.model_copy(update={"body": base64.b64encode(body[:40]).decode()})  # truncated: no signature
    assert isinstance(signed_answer_document(cut, MINER.ss58_address), str)


async def test_the_verifier_draws_at_its_rate_and_marks_private_records(redis_client: aioredis.Redis) -> None:
    pipeline = ValidatorPipeline(redis_client, GATEWAY.ss58_address, 7)
    with pytest.raises(ValueError, match="organic_verify_rate"):
        OrganicVerifier(pipeline, GATEWAY.ss58_address, rate=1.5)
    async with OrganicVerifier(pipeline, GATEWAY.ss58_address, rate=0.1, rng=random.Random(2),
                               flush_seconds=0.05) as verifier:
        drawn = sum(verifier.draw() for _ in range(2000))
        assert 150 <= drawn <= 250
        body = json.dumps(ANSWER).encode()
        signed = signed_answer("body", body, "u", GATEWAY.ss58_address, sign_response(MINER, body, "u", GATEWAY.ss58_address))
        request = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}).encode()
        verifier.add(miner=MINER.ss58_address, model="m", task="chat", request=request, signed=signed, private=True)
    assert not any(OrganicVerifier(pipeline, GATEWAY.ss58_address, rate=0.0).draw() for _ in range(100))
    only = OrganicVerifier(pipeline, GATEWAY.ss58_address, rate=1.0, models=["m"])
    assert only.draw("m") and not only.draw("another") and only.wants("m") and not only.wants("another")
    assert only.draw("PP-OCRv4", "ocr") and only.wants("any-model", "orientation")  # tasks: none named, all
    ocr_only = OrganicVerifier(pipeline, GATEWAY.ss58_address, rate=1.0, models=["m"], tasks=["ocr"])
    assert ocr_only.draw("PP-OCRv4", "ocr") and not ocr_only.draw("PP-LCNet-doc-orientation", "orientation")
    assert ocr_only.wants("m") and not ocr_only.wants("PP-OCRv4")  # chat: by reference model, as before
    entries = await redis_client.xrange(pipeline.answers)
    assert len(entries) == 1
    record = ChallengeRecord.from_json(entries[0][1][b"record"])
    assert record.private and record.signed == signed and record.answer is None
    assert record.observation.kind == "audit" and record.observation.max_tokens == 5
