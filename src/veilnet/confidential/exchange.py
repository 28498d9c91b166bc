"""One sealed request seen from each side of the relay, as plain objects over bytes (no HTTP).

* :class:`SealedExchange` — the client (or a gateway sealing on an app's behalf): seals the request to an
  attested keyset, then opens the answer, refusing plaintext downgrades, tampered frames and bad receipts.
* :class:`ReceiptWitness` — a relay that cannot read the exchange: hashes the frames it forwards and checks
  the enclave's receipt against them, so it bills only for what was really sent.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError

from veilnet.confidential.errors import ReceiptInvalid, ResponseTampered
from veilnet.confidential.receipts import verify_receipt
from veilnet.confidential.sealing import KeysetKeys, seal_request
from veilnet.confidential.sessions import AttestedMiner
from veilnet.protocol import sse
from veilnet.protocol.confidential import (
    ENCRYPTION_SCHEME,
    SealedFrame,
    SealedRequest,
    SealedResponse,
    UsageReceipt,
)
from veilnet.protocol.headers import ENCRYPTION_HEADER
from veilnet.protocol.paths import Endpoint

__all__ = ["ReceiptWitness", "SealedExchange", "parse_stream_line"]


def parse_stream_line(line: bytes) -> SealedFrame | UsageReceipt | None:
    """A sealed stream's SSE ``data:`` line as a frame or the receipt; None for ``[DONE]``, blanks, comments."""
    if not line.startswith(sse.JSON_DATA):
        return None
    try:
        data = json.loads(line[len(sse.DATA):])
        if "receipt" in data:
            return UsageReceipt.model_validate(data["receipt"])
        return SealedFrame.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise ResponseTampered(f"sealed stream carries a malformed event: {exc}") from exc


class ReceiptWitness:
    """What a relay checks without a key: the ciphertext hashes and the enclave's signature on the receipt."""

    def __init__(self, sealed: SealedRequest, keys: KeysetKeys) -> None:
        self.sealed = sealed
        self.keys = keys
        self._frames: list[bytes] = []
        self.receipt: UsageReceipt | None = None

    def feed(self, line: bytes) -> None:
        event = parse_stream_line(line)
        if isinstance(event, SealedFrame):
            self._frames.append(event.ct)
        elif isinstance(event, UsageReceipt):
            self.receipt = event

    @property
    def frames(self) -> int:
        """Frames relayed so far."""
        return len(self._frames)

    def feed_response(self, response: SealedResponse) -> None:
        self._frames.extend(f.ct for f in response.frames)
        self.receipt = response.receipt

    def finish(self) -> UsageReceipt:
        if self.receipt is None:
            raise ReceiptInvalid("the enclave sent no usage receipt")
        digest = hashlib.sha256()
        for ct in self._frames:
            digest.update(ct)
        verify_receipt(self.receipt, self.keys, request_id=self.sealed.request_id,
                       request_sha256=self.sealed.ciphertext_sha256(), response_sha256=digest.hexdigest(),
                       model=self.sealed.model)
        return self.receipt


class SealedExchange:
    """Seal ``payload`` (an OpenAI request dict) to ``miner``'s attested keyset and open its answer;
    :meth:`of_body` seals a request already serialised (the exact bytes a plain request would carry)."""

    def __init__(self, miner: AttestedMiner, payload: dict[str, Any], endpoint: Endpoint) -> None:
        self._seal(miner, json.dumps(payload, separators=(",", ":")).encode(), endpoint, str(payload["model"]),
                   bool(payload.get("stream")))

    @classmethod
    def of_body(cls, miner: AttestedMiner, body: bytes, endpoint: Endpoint, *, model: str,
                stream: bool) -> SealedExchange:
        exchange = cls.__new__(cls)
        exchange._seal(miner, body, endpoint, model, stream)
        return exchange

    def _seal(self, miner: AttestedMiner, body: bytes, endpoint: Endpoint, model: str, stream: bool) -> None:
        self.miner = miner
        self.stream = stream
        self.sealed, self._opener = seal_request(miner.keys, body, endpoint=endpoint, model=model, stream=stream)
        self.receipt: UsageReceipt | None = None

    def body(self) -> bytes:
        return self.sealed.model_dump_json().encode()

    @staticmethod
    def check_encrypted(headers: Any) -> None:
        """A 2xx answer to a sealed request must say it is sealed; anything else is a plaintext downgrade."""
        if headers.get(ENCRYPTION_HEADER) != ENCRYPTION_SCHEME:
            raise ResponseTampered("the answer to a sealed request is not encrypted (plaintext downgrade refused)",
                                   code="plaintext_downgrade")

    def open_response(self, body: bytes) -> dict[str, Any]:
        """A sealed non-streaming answer -> the OpenAI response, its receipt checked."""
        try:
            response = SealedResponse.model_validate_json(body)
        except ValidationError as exc:
            raise ResponseTampered(f"sealed answer is malformed: {exc.errors()[0]['msg']}") from exc
        plaintext = self._opener.open_all(response.frames)
        self._check_receipt(response.receipt)
        try:
            data = json.loads(b"".join(plaintext))
        except ValueError as exc:
            raise ResponseTampered("sealed answer does not decrypt to JSON") from exc
        if not isinstance(data, dict):
            raise ResponseTampered("sealed answer does not decrypt to a JSON object")
        return data

    def open_line(self, line: bytes) -> bytes | None:
        """One line of a sealed stream -> the plaintext SSE payload it carries (None when it carries none)."""
        event = parse_stream_line(line)
        if isinstance(event, SealedFrame):
            plaintext = self._opener.open(event)
            return plaintext or None
        if isinstance(event, UsageReceipt):
            self._opener.finish()
            self._check_receipt(event)
        return None

    def finish(self) -> UsageReceipt:
        """At the end of a stream: the final frame and the receipt must both have arrived."""
        self._opener.finish()
        if self.receipt is None:
            raise ReceiptInvalid("the enclave sent no usage receipt")
        return self.receipt

    def _check_receipt(self, receipt: UsageReceipt) -> None:
        verify_receipt(receipt, self.miner.keys, request_id=self.sealed.request_id,
                       request_sha256=self.sealed.ciphertext_sha256(),
                       response_sha256=self._opener.response_sha256(), model=self.sealed.model)
        self.receipt = receipt
