"""HPKE-sealed requests, ordered authenticated response frames and usage receipts."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.confidential.conftest import MODEL
from veilnet.confidential import (
    AttestationFailed,
    AttestedMiner,
    DecryptionFailed,
    Enclave,
    EvidenceVerifier,
    KeysetKeys,
    ReceiptInvalid,
    ReceiptWitness,
    RequestReplayed,
    ResponseTampered,
    SealedExchange,
    StaleKeyset,
    seal_request,
)
from veilnet.confidential.nonces import ServedRequests
from veilnet.protocol.confidential import SealedRequest, SealedResponse


async def attested(enclave: Enclave, verifier: EvidenceVerifier) -> AttestedMiner:
    nonce = verifier.challenge()
    evidence = await enclave.attest(nonce)
    return AttestedMiner(evidence.keyset, await verifier.verify(evidence, nonce))


def test_request_opens_only_with_its_associated_data(make_enclave: Callable[..., Enclave]) -> None:
    enclave = make_enclave()
    sealed, _ = seal_request(KeysetKeys.of(enclave.keyset), b'{"secret":1}', endpoint="chat.completions",
                             model=MODEL, stream=False)
    assert b"secret" not in sealed.model_dump_json().encode()
    assert enclave.open(sealed).plaintext == b'{"secret":1}'
    for change in ({"model": "gemma-3-270m"}, {"stream": True}, {"endpoint": "completions"},
                   {"request_id": "0" * 32}, {"issued_at": sealed.issued_at + 1}):
        with pytest.raises(DecryptionFailed, match="does not open"):
            enclave.open(sealed.model_copy(update=change))
    with pytest.raises(StaleKeyset, match="attest again"):
        make_enclave().open(sealed)  # sealed to another enclave's keyset


def test_a_sealed_request_is_served_once_and_only_while_fresh(make_enclave: Callable[..., Enclave]) -> None:
    enclave = make_enclave()
    keys = KeysetKeys.of(enclave.keyset)

    def seal(**kwargs: int) -> SealedRequest:
        return seal_request(keys, b"{}", endpoint="chat.completions", model=MODEL, stream=False, **kwargs)[0]

    sealed = seal()
    with pytest.raises(DecryptionFailed, match="does not open"):  # a forgery under its id does not burn it
        enclave.open(sealed.model_copy(update={"ciphertext": b"\x00" * len(sealed.ciphertext)}))
    assert enclave.open(sealed).plaintext == b"{}"
    with pytest.raises(RequestReplayed, match="already served") as replayed:
        enclave.open(sealed)
    assert replayed.value.code == "request_replayed"
    now = int(enclave.clock())
    for skew in (-500, 500):  # too old, or from a clock far ahead
        with pytest.raises(RequestReplayed, match="within 120 s") as stale:
            enclave.open(seal(issued_at=now + skew))
        assert stale.value.code == "request_expired"
    assert enclave.open(seal(issued_at=now - 100)).plaintext == b"{}"  # clocks a little apart are fine


def test_served_request_ids_are_forgotten_once_they_could_no_longer_be_fresh() -> None:
    served = ServedRequests(window=10)
    for n in range(5000):
        served.admit(f"{n:032x}", issued_at=0, now=0)
    for n in range(5000, 9000):  # the book outgrows its mark: the ids that can no longer be fresh go
        served.admit(f"{n:032x}", issued_at=1000, now=1000)
    assert len(served._served) == 4000
    with pytest.raises(RequestReplayed):
        served.admit(f"{8999:032x}", issued_at=1000, now=1001)


def test_a_keyset_with_an_unusable_key_is_refused_before_any_request(make_enclave: Callable[..., Enclave]) -> None:
    keyset = make_enclave().keyset
    for field in ("receipt_public_key", "hpke_public_key"):
        with pytest.raises(AttestationFailed, match="unusable public key"):
            KeysetKeys.of(keyset.model_copy(update={field: b"\x01" * 31}))


async def test_streamed_frames_round_trip_and_the_receipt_verifies(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    enclave = make_enclave()
    exchange = SealedExchange(await attested(enclave, make_verifier()), {"model": MODEL, "stream": True,
                                                                         "messages": []}, "chat.completions")
    opened = enclave.open(exchange.sealed)
    assert json.loads(opened.plaintext)["stream"] is True
    lines = [b"data: " + opened.sealer.frame(f'{{"n":{i}}}'.encode()).model_dump_json().encode() for i in range(3)]
    lines.append(b"data: " + opened.sealer.frame(b"", final=True).model_dump_json().encode())
    receipt = enclave.receipt(exchange.sealed, opened.sealer, {"prompt_tokens": 5, "completion_tokens": 3},
                              price_input=0.05, price_output=0.1)
    lines.append(b'data: {"receipt":' + receipt.model_dump_json().encode() + b"}")
    witness = ReceiptWitness(exchange.sealed, KeysetKeys.of(enclave.keyset))
    out = []
    for line in lines:
        witness.feed(line)
        if (plain := exchange.open_line(line)) is not None:
            out.append(json.loads(plain)["n"])
    assert out == [0, 1, 2]
    assert exchange.finish().completion_tokens == 3
    assert witness.finish().cost_usd == pytest.approx((5 * 0.05 + 3 * 0.1) / 1e6)


async def _stream(enclave: Enclave, verifier: EvidenceVerifier, frames: int = 3) -> tuple[SealedExchange, list[bytes]]:
    exchange = SealedExchange(await attested(enclave, verifier), {"model": MODEL, "stream": True}, "chat.completions")
    opened = enclave.open(exchange.sealed)
    lines = [b"data: " + opened.sealer.frame(b"{}", final=i == frames - 1).model_dump_json().encode()
             for i in range(frames)]
    return exchange, lines


async def test_reordered_frames_are_refused(make_enclave: Callable[..., Enclave],
                                            make_verifier: Callable[..., EvidenceVerifier]) -> None:
    exchange, lines = await _stream(make_enclave(), make_verifier())
    exchange.open_line(lines[0])
    with pytest.raises(ResponseTampered, match="frame 2 arrived where frame 1 was due"):
        exchange.open_line(lines[2])


async def test_relabelled_frame_fails_authentication(make_enclave: Callable[..., Enclave],
                                                     make_verifier: Callable[..., EvidenceVerifier]) -> None:
    exchange, lines = await _stream(make_enclave(), make_verifier())
    exchange.open_line(lines[0])
    forged = json.loads(lines[2][6:])
    forged["seq"] = 1  # a relay renumbers frame 2 to slip it in place of frame 1
    with pytest.raises(ResponseTampered, match="fails authentication"):
        exchange.open_line(b"data: " + json.dumps(forged).encode())


async def test_truncated_stream_is_refused(make_enclave: Callable[..., Enclave],
                                           make_verifier: Callable[..., EvidenceVerifier]) -> None:
    exchange, lines = await _stream(make_enclave(), make_verifier())
    for line in lines[:-1]:
        exchange.open_line(line)
    with pytest.raises(ResponseTampered, match="without its final frame"):
        exchange.finish()
    exchange2, lines2 = await _stream(make_enclave(), make_verifier())
    exchange2.open_line(lines2[0])
    forged = json.loads(lines2[1][6:])
    forged["final"] = True  # claiming an early end
    with pytest.raises(ResponseTampered, match="fails authentication"):
        exchange2.open_line(b"data: " + json.dumps(forged).encode())


async def test_sealed_json_answer_and_receipt_tampering(make_enclave: Callable[..., Enclave],
                                                        make_verifier: Callable[..., EvidenceVerifier]) -> None:
    enclave = make_enclave()
    miner = await attested(enclave, make_verifier())

    def answer(exchange: SealedExchange, tokens: int = 7) -> SealedResponse:
        opened = enclave.open(exchange.sealed)
        frame = opened.sealer.frame(b'{"choices":[]}', final=True)
        receipt = enclave.receipt(exchange.sealed, opened.sealer, {"completion_tokens": tokens},
                                  price_input=0.0, price_output=1.0)
        return SealedResponse(request_id=exchange.sealed.request_id, frames=[frame], receipt=receipt)

    exchange = SealedExchange(miner, {"model": MODEL}, "chat.completions")
    assert exchange.open_response(answer(exchange).model_dump_json().encode()) == {"choices": []}
    assert exchange.receipt is not None and exchange.receipt.completion_tokens == 7

    exchange = SealedExchange(miner, {"model": MODEL}, "chat.completions")
    response = answer(exchange)
    inflated = response.receipt.model_copy(update={"completion_tokens": 7000})
    with pytest.raises(ReceiptInvalid, match="not signed"):
        exchange.open_response(response.model_copy(update={"receipt": inflated}).model_dump_json().encode())

    other = SealedExchange(miner, {"model": MODEL}, "chat.completions")
    replayed = answer(other)  # a valid receipt, but for another request
    exchange = SealedExchange(miner, {"model": MODEL}, "chat.completions")
    with pytest.raises(ResponseTampered):
        exchange.open_response(replayed.model_dump_json().encode())
    witness = ReceiptWitness(exchange.sealed, KeysetKeys.of(enclave.keyset))
    witness.feed_response(replayed)
    with pytest.raises(ReceiptInvalid, match="request_id"):
        witness.finish()


def test_plaintext_downgrade_is_refused() -> None:
    with pytest.raises(ResponseTampered, match="plaintext downgrade") as refused:
        SealedExchange.check_encrypted({"Content-Type": "application/json"})
    assert refused.value.code == "plaintext_downgrade"
    SealedExchange.check_encrypted({"X-Veilnet-Encryption": "hpke-v1"})
