"""Epistula v2 signed HTTP requests and responses — one module for miner, validator and gateway.

Request headers: ``Epistula-Version: 2``, ``Epistula-Timestamp`` (ms), ``Epistula-Uuid``, ``Epistula-Signed-By``
(ss58), ``Epistula-Signed-For`` (receiver ss58) and ``Epistula-Request-Signature``: the sr25519 signature of
``"{sha256(body) hex}.{uuid}.{timestamp}.{signed_for}"`` over the exact bytes sent.

Responses carry ``Epistula-Response-Signature`` by the responder over
``"{sha256(body) hex}.{request uuid}.{timestamp}.{caller ss58}"`` with ``Epistula-Signed-By`` and
``Epistula-Timestamp``. A streamed response cannot be signed in a header before its body exists, so its last
SSE line is a comment ``: epistula-signature {timestamp} {signature}`` over every byte streamed before it.

Verification checks (each failure a :class:`EpistulaError` naming the check): headers present, version,
timestamp within the window both ways, signed_for is the receiver, signature; the replay cache and the
metagraph check are the receiver's (they need Redis and a chain).
"""

from __future__ import annotations

import functools
import hashlib
import time
import uuid as uuid_module
from collections.abc import Mapping
from dataclasses import dataclass

from bittensor_wallet import Keypair

from veilnet.errors import AuthenticationError

__all__ = [
    "EpistulaClaims",
    "EpistulaError",
    "StreamSigner",
    "sign_request",
    "sign_response",
    "signed_message",
    "verify_request",
    "verify_response",
    "verify_stream",
]

VERSION = "2"
STREAM_SIGNATURE_PREFIX = b": epistula-signature "


class EpistulaError(AuthenticationError):
    """A signed request or response failed one check; ``check`` names it (e.g. ``signature``)."""

    code = "epistula_failed"

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"Epistula check '{check}' failed: {message}", code=f"epistula_{check}")
        self.check = check


@dataclass(frozen=True, slots=True)
class EpistulaClaims:
    signed_by: str
    signed_for: str
    uuid: str
    timestamp: int


def signed_message(body: bytes, uuid: str, timestamp: int, signed_for: str) -> bytes:
    return f"{hashlib.sha256(body).hexdigest()}.{uuid}.{timestamp}.{signed_for}".encode()


def sign_request(
    keypair: Keypair, body: bytes, signed_for: str, *, now_ms: int | None = None, uuid: str | None = None
) -> dict[str, str]:
    """The Epistula headers for sending ``body`` to ``signed_for``."""
    timestamp = int(time.time() * 1000) if now_ms is None else now_ms
    request_uuid = uuid or str(uuid_module.uuid4())
    signature = keypair.sign(signed_message(body, request_uuid, timestamp, signed_for))
    return {
        "Epistula-Version": VERSION,
        "Epistula-Timestamp": str(timestamp),
        "Epistula-Uuid": request_uuid,
        "Epistula-Signed-By": keypair.ss58_address,
        "Epistula-Signed-For": signed_for,
        "Epistula-Request-Signature": "0x" + signature.hex(),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise EpistulaError("headers", f"missing header {name}")
    return value


@functools.lru_cache(maxsize=4096)
def _public_key(ss58: str) -> Keypair:
    """The verifying key of an address (decoded once: a subnet's callers are few)."""
    return Keypair(ss58_address=ss58)


def _verify(ss58: str, message: bytes, signature_hex: str) -> bool:
    try:
        signature = bytes.fromhex(signature_hex.removeprefix("0x"))
        return bool(_public_key(ss58).verify(message, signature))
    except Exception:  # malformed address or signature bytes: a failed check, never a crash
        return False


def verify_request(
    headers: Mapping[str, str], body: bytes, *, receiver: str, max_skew_ms: int, now_ms: int | None = None
) -> EpistulaClaims:
    """Check a signed request addressed to ``receiver``; returns who signed it."""
    version = _header(headers, "Epistula-Version")
    if version != VERSION:
        raise EpistulaError("version", f"unsupported Epistula-Version {version!r}, expected {VERSION}")
    raw_timestamp = _header(headers, "Epistula-Timestamp")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise EpistulaError("timestamp", f"Epistula-Timestamp is not an integer: {raw_timestamp!r}") from None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if timestamp < now - max_skew_ms:
        raise EpistulaError("timestamp", f"request is stale by {now - timestamp} ms (window {max_skew_ms} ms)")
    if timestamp > now + max_skew_ms:
        raise EpistulaError("timestamp", f"request is {timestamp - now} ms in the future (window {max_skew_ms} ms)")
    request_uuid = _header(headers, "Epistula-Uuid")
    if len(request_uuid) > 64:
        raise EpistulaError("uuid", "Epistula-Uuid is longer than 64 characters")
    signed_by = _header(headers, "Epistula-Signed-By")
    signed_for = _header(headers, "Epistula-Signed-For")
    if signed_for != receiver:
        raise EpistulaError("signed_for", f"request is signed for {signed_for}, not this receiver {receiver}")
    signature = _header(headers, "Epistula-Request-Signature")
    if not _verify(signed_by, signed_message(body, request_uuid, timestamp, signed_for), signature):
        raise EpistulaError("signature", f"signature does not verify for {signed_by} over this body")
    return EpistulaClaims(signed_by=signed_by, signed_for=signed_for, uuid=request_uuid, timestamp=timestamp)


def sign_response(keypair: Keypair, body: bytes, request_uuid: str, caller: str) -> dict[str, str]:
    """Headers proving ``keypair`` sent ``body`` in answer to request ``request_uuid`` from ``caller``."""
    timestamp = int(time.time() * 1000)
    signature = keypair.sign(signed_message(body, request_uuid, timestamp, caller))
    return {
        "Epistula-Version": VERSION,
        "Epistula-Timestamp": str(timestamp),
        "Epistula-Signed-By": keypair.ss58_address,
        "Epistula-Response-Signature": "0x" + signature.hex(),
    }


def verify_response(
    headers: Mapping[str, str], body: bytes, *, request_uuid: str, caller: str, expected_signer: str | None = None
) -> str:
    """Check a signed response; returns the signer's ss58 (must equal ``expected_signer`` when given)."""
    signed_by = _header(headers, "Epistula-Signed-By")
    if expected_signer is not None and signed_by != expected_signer:
        raise EpistulaError("signed_by", f"response signed by {signed_by}, expected {expected_signer}")
    try:
        timestamp = int(_header(headers, "Epistula-Timestamp"))
    except ValueError:
        raise EpistulaError("timestamp", "response timestamp is not an integer") from None
    signature = _header(headers, "Epistula-Response-Signature")
    if not _verify(signed_by, signed_message(body, request_uuid, timestamp, caller), signature):
        raise EpistulaError("signature", f"response signature does not verify for {signed_by}")
    return signed_by


class StreamSigner:
    """Hashes a streamed response as it is sent and produces its final signature line."""

    def __init__(self, keypair: Keypair, request_uuid: str, caller: str) -> None:
        self._keypair = keypair
        self._uuid = request_uuid
        self._caller = caller
        self._hash = hashlib.sha256()

    def feed(self, chunk: bytes) -> bytes:
        self._hash.update(chunk)
        return chunk

    def final_line(self) -> bytes:
        timestamp = int(time.time() * 1000)
        message = f"{self._hash.hexdigest()}.{self._uuid}.{timestamp}.{self._caller}".encode()
        signature = self._keypair.sign(message).hex()
        return STREAM_SIGNATURE_PREFIX + f"{timestamp} 0x{signature}\n\n".encode()


def verify_stream(body: bytes, *, request_uuid: str, caller: str, signer: str) -> bytes:
    """Check a whole streamed body ending in its signature line; returns the body before that line."""
    index = body.rfind(STREAM_SIGNATURE_PREFIX)
    if index < 0:
        raise EpistulaError("signature", "streamed response has no signature line")
    content, line = body[:index], body[index + len(STREAM_SIGNATURE_PREFIX):].strip().decode(errors="replace")
    try:
        raw_timestamp, signature = line.split(" ", 1)
        timestamp = int(raw_timestamp)
    except ValueError:
        raise EpistulaError("signature", "malformed stream signature line") from None
    message = f"{hashlib.sha256(content).hexdigest()}.{request_uuid}.{timestamp}.{caller}".encode()
    if not _verify(signer, message, signature):
        raise EpistulaError("signature", f"streamed response signature does not verify for {signer}")
    return content
