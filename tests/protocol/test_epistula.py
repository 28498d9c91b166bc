from __future__ import annotations

import pytest
from bittensor_wallet import Keypair

from veilnet.protocol.epistula import (
    EpistulaError,
    StreamSigner,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
    verify_stream,
)

SENDER = Keypair.create_from_uri("//EpSender")
RECEIVER = Keypair.create_from_uri("//EpReceiver")


def test_round_trip_and_each_check() -> None:
    body = b'{"a": 1}'
    headers = sign_request(SENDER, body, RECEIVER.ss58_address, now_ms=1_000_000)
    claims = verify_request(headers, body, receiver=RECEIVER.ss58_address, max_skew_ms=5_000, now_ms=1_001_000)
    assert claims.signed_by == SENDER.ss58_address and claims.timestamp == 1_000_000
    with pytest.raises(EpistulaError) as err:
        verify_request(headers, body + b" ", receiver=RECEIVER.ss58_address, max_skew_ms=5_000, now_ms=1_001_000)
    assert err.value.check == "signature"
    with pytest.raises(EpistulaError) as err:
        verify_request(headers, body, receiver=RECEIVER.ss58_address, max_skew_ms=5_000, now_ms=1_006_001)
    assert err.value.check == "timestamp"
    with pytest.raises(EpistulaError) as err:
        verify_request({**headers, "Epistula-Version": "1"}, body, receiver=RECEIVER.ss58_address,
                       max_skew_ms=5_000, now_ms=1_000_000)
    assert err.value.check == "version"
    with pytest.raises(EpistulaError) as err:
        verify_request({**headers, "Epistula-Signed-By": RECEIVER.ss58_address}, body,
                       receiver=RECEIVER.ss58_address, max_skew_ms=5_000, now_ms=1_000_000)
    assert err.value.check == "signature"


def test_response_signature_binds_body_request_and_caller() -> None:
    headers = sign_response(RECEIVER, b"answer", "uuid-1", SENDER.ss58_address)
    assert verify_response(headers, b"answer", request_uuid="uuid-1", caller=SENDER.ss58_address) == RECEIVER.ss58_address
    for body, uuid, caller in [(b"answer!", "uuid-1", SENDER.ss58_address), (b"answer", "uuid-2", SENDER.ss58_address),
                               (b"answer", "uuid-1", RECEIVER.ss58_address)]:
        with pytest.raises(EpistulaError):
            verify_response(headers, body, request_uuid=uuid, caller=caller)
    with pytest.raises(EpistulaError):
        verify_response(headers, b"answer", request_uuid="uuid-1", caller=SENDER.ss58_address,
                        expected_signer=SENDER.ss58_address)


def test_stream_signature_detects_truncation_and_tampering() -> None:
    signer = StreamSigner(RECEIVER, "u", SENDER.ss58_address)
    parts = [signer.feed(b"data: {\"x\": 1}\n\n"), signer.feed(b"data: [DONE]\n\n"), signer.final_line()]
    body = b"".join(parts)
    assert verify_stream(body, request_uuid="u", caller=SENDER.ss58_address, signer=RECEIVER.ss58_address) == b"".join(parts[:2])
    with pytest.raises(EpistulaError):
        verify_stream(body.replace(b"1", b"2", 1), request_uuid="u", caller=SENDER.ss58_address,
                      signer=RECEIVER.ss58_address)
    with pytest.raises(EpistulaError):
        verify_stream(b"".join(parts[:2]), request_uuid="u", caller=SENDER.ss58_address, signer=RECEIVER.ss58_address)
