"""Sealing requests to an attested keyset (HPKE, RFC 9180) and the ordered, authenticated response frames.

Request: HPKE base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, ``info`` fixed to
this protocol version; the associated data is every envelope field the gateway can see (endpoint, model,
stream flag, request id, time of issue, keyset digest), so changing any of them makes the request fail to
open; the enclave serves a request id once, and only while its time of issue is fresh (``ServedRequests``).

Response: a 32-byte key exported from the same HPKE context (both ends derive it; nobody else can), then
ChaCha20-Poly1305 frames whose nonce is the frame's sequence number and whose associated data is the
request id, the sequence number and the final flag. A reordered, dropped, duplicated or altered frame fails
authentication; a stream that ends without a final frame is truncated.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKeyInterface, PyHPKEError

from veilnet.confidential.errors import AttestationFailed, DecryptionFailed, ResponseTampered, StaleKeyset
from veilnet.protocol.confidential import Keyset, SealedFrame, SealedRequest

__all__ = [
    "SUITE",
    "EnclaveKeyPair",
    "KeysetKeys",
    "RequestOpener",
    "ResponseOpener",
    "ResponseSealer",
    "open_request",
    "seal_request",
]

SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)
_INFO = b"veilnet/hpke-v1 request"
_RESPONSE_KEY_LABEL = b"veilnet/hpke-v1 response key"


@dataclass(frozen=True)
class EnclaveKeyPair:
    """The enclave's HPKE key pair; the private half never leaves the enclave process."""

    private_key: KEMKeyInterface
    public_bytes: bytes

    @classmethod
    def generate(cls) -> EnclaveKeyPair:
        pair = SUITE.kem.derive_key_pair(os.urandom(32))
        return cls(pair.private_key, pair.public_key.to_public_bytes())


@dataclass(frozen=True)
class KeysetKeys:
    """A keyset's digest and public keys in usable form, derived once (per attestation session, see
    :class:`~veilnet.confidential.sessions.AttestedMiner`) instead of on every request."""

    keyset: Keyset
    digest_hex: str
    hpke_public_key: KEMKeyInterface  # requests are sealed to it
    receipt_public_key: VerifyKey  # usage receipts are checked against it (libsodium: twice as fast as OpenSSL here)

    @classmethod
    def of(cls, keyset: Keyset) -> KeysetKeys:
        try:
            return cls(keyset, keyset.digest().hex(), SUITE.kem.deserialize_public_key(keyset.hpke_public_key),
                       VerifyKey(keyset.receipt_public_key))
        except (PyHPKEError, CryptoError, ValueError) as exc:
            raise AttestationFailed(f"keyset of {keyset.hotkey} holds an unusable public key: {exc}",
                                    code="evidence_malformed") from exc

    @property
    def hotkey(self) -> str:
        return self.keyset.hotkey


def _frame_aad(request_id: str, seq: int, final: bool) -> bytes:
    return request_id.encode() + struct.pack(">Q?", seq, final)


def _frame_nonce(seq: int) -> bytes:
    return seq.to_bytes(12, "big")


@dataclass
class ResponseSealer:
    """Enclave side: seals response plaintexts into frames 0, 1, 2, … and hashes the ciphertext it sent."""

    request_id: str
    _aead: ChaCha20Poly1305
    _seq: int = 0
    _finished: bool = False
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)

    def frame(self, plaintext: bytes, *, final: bool = False) -> SealedFrame:
        if self._finished:
            raise RuntimeError("the final frame was already sealed")
        seq = self._seq
        ct = self._aead.encrypt(_frame_nonce(seq), plaintext, _frame_aad(self.request_id, seq, final))
        self._seq += 1
        self._finished = final
        self._hash.update(ct)
        return SealedFrame(seq=seq, final=final, ct=ct)

    def response_sha256(self) -> str:
        return self._hash.hexdigest()


@dataclass
class ResponseOpener:
    """Client side: opens frames strictly in order; ``finish()`` refuses a stream without its final frame."""

    request_id: str
    _aead: ChaCha20Poly1305
    _seq: int = 0
    _finished: bool = False
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)

    def open(self, frame: SealedFrame) -> bytes:
        if self._finished:
            raise ResponseTampered("a frame arrived after the final frame")
        if frame.seq != self._seq:
            raise ResponseTampered(f"response frame {frame.seq} arrived where frame {self._seq} was due "
                                   "(reordered or dropped)")
        try:
            plaintext = self._aead.decrypt(_frame_nonce(frame.seq), frame.ct,
                                           _frame_aad(self.request_id, frame.seq, frame.final))
        except InvalidTag as exc:
            raise ResponseTampered(f"response frame {frame.seq} fails authentication") from exc
        self._seq += 1
        self._finished = frame.final
        self._hash.update(frame.ct)
        return plaintext

    def open_all(self, frames: Iterable[SealedFrame]) -> list[bytes]:
        out = [self.open(f) for f in frames]
        self.finish()
        return out

    def finish(self) -> None:
        if not self._finished:
            raise ResponseTampered(f"response ended after {self._seq} frames without its final frame (truncated)")

    def response_sha256(self) -> str:
        return self._hash.hexdigest()


def seal_request(keys: KeysetKeys, plaintext: bytes, *, endpoint: Literal["chat.completions", "completions"],
                 model: str, stream: bool, issued_at: int | None = None) -> tuple[SealedRequest, ResponseOpener]:
    """Seal an OpenAI request body to a keyset; the opener decrypts the answer to exactly this request."""
    enc, context = SUITE.create_sender_context(keys.hpke_public_key, info=_INFO)
    draft = SealedRequest(endpoint=endpoint, model=model, stream=stream, request_id=os.urandom(16).hex(),
                          issued_at=int(time.time()) if issued_at is None else issued_at,
                          keyset_digest=keys.digest_hex, enc=enc, ciphertext=b"")
    sealed = draft.model_copy(update={"ciphertext": context.seal(plaintext, aad=draft.associated_data())})
    key = context.export(_RESPONSE_KEY_LABEL, 32)
    return sealed, ResponseOpener(sealed.request_id, ChaCha20Poly1305(key))


@dataclass(frozen=True)
class RequestOpener:
    plaintext: bytes
    sealer: ResponseSealer


def open_request(keys: EnclaveKeyPair, keyset_digest: str, sealed: SealedRequest) -> RequestOpener:
    """Enclave side: the plaintext request and the sealer for its answer (DecryptionFailed otherwise)."""
    if sealed.keyset_digest != keyset_digest:
        raise StaleKeyset(f"request is sealed to keyset {sealed.keyset_digest[:16]}…, this enclave holds "
                          f"{keyset_digest[:16]}…; attest again")
    try:
        context = SUITE.create_recipient_context(sealed.enc, keys.private_key, info=_INFO)
        plaintext = context.open(sealed.ciphertext, aad=sealed.associated_data())
    except (PyHPKEError, ValueError) as exc:
        raise DecryptionFailed("sealed request does not open: wrong key, or its model, endpoint, stream flag or "
                               "request id was changed after sealing") from exc
    key = context.export(_RESPONSE_KEY_LABEL, 32)
    return RequestOpener(plaintext, ResponseSealer(sealed.request_id, ChaCha20Poly1305(key)))
