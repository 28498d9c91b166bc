"""The miner's side of confidential serving: the enclave's keys, its keyset, its evidence, its receipts.

An :class:`Enclave` is created inside the TEE when the miner starts: fresh HPKE and receipt keys that never
leave the process, a keyset naming them with the models' weights digests and the serving code's digest,
signed by the miner's hotkey. On each challenge it asks its :class:`EvidenceProvider` for a fresh report
binding that keyset to the verifier's nonce.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from veilnet.confidential.keyset import gpu_nonce_for, report_data_for, sign_keyset
from veilnet.confidential.nonces import ServedRequests
from veilnet.confidential.receipts import sign_receipt
from veilnet.confidential.sealing import EnclaveKeyPair, RequestOpener, ResponseSealer, open_request
from veilnet.confidential.verifiers.dev import dev_statement
from veilnet.errors import ConfigError
from veilnet.protocol.confidential import (
    Evidence,
    Keyset,
    ModelMeasurement,
    Platform,
    SealedRequest,
    UsageReceipt,
)

__all__ = [
    "DevEnclaveProvider",
    "Enclave",
    "EvidenceProvider",
    "dev_public_key_hex",
    "file_sha256",
    "load_or_create_dev_key",
    "serving_code_sha256",
]


class EvidenceProvider(Protocol):
    @property
    def platform(self) -> Platform: ...

    async def evidence(self, report_data: bytes, gpu_nonce: bytes, keyset: Keyset) -> Evidence: ...


@dataclass
class DevEnclaveProvider:
    """The development enclave: signs a statement with a local key the verifiers pin (simulated)."""

    key: Ed25519PrivateKey
    measurements: dict[str, str]
    debug: bool = False
    platform: Platform = "dev"

    async def evidence(self, report_data: bytes, gpu_nonce: bytes, keyset: Keyset) -> Evidence:
        quote = dev_statement(self.key, report_data, self.measurements, debug=self.debug, issued_at=int(time.time()))
        return Evidence(platform="dev", quote=quote, keyset=keyset)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def serving_code_sha256(package_dir: Path | None = None) -> str:
    """SHA-256 over veilnet's own source files (relative path and content of each, in order)."""
    root = package_dir or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".lua", ".json", ".html", ".js", ".css", ".ini", ".mako"}:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def load_or_create_dev_key(path: Path) -> Ed25519PrivateKey:
    """The development enclave's signing key (created 0600 on first use); verifiers pin its public half."""
    if path.is_file():
        try:
            return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))
        except ValueError as exc:
            raise ConfigError(f"development enclave key {path} is not 32 hex-encoded bytes") from exc
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex())
    return key


def dev_public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


class Enclave:
    """Keys, keyset and evidence of one miner enclave."""

    def __init__(self, hotkey: Keypair, provider: EvidenceProvider, models: list[ModelMeasurement], *,
                 code_sha256: str, clock: Callable[[], float] = time.time) -> None:
        self.provider = provider
        self.clock = clock
        self.keys = EnclaveKeyPair.generate()
        self._receipt_key = Ed25519PrivateKey.generate()
        keyset = Keyset(
            hotkey=hotkey.ss58_address, hpke_public_key=self.keys.public_bytes,
            receipt_public_key=self._receipt_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
            models=models, code_sha256=code_sha256, created_at=int(clock()),
        )
        self.keyset = sign_keyset(keyset, hotkey)
        self.keyset_digest = self.keyset.digest()
        self.served = ServedRequests()

    @property
    def simulated(self) -> bool:
        return self.provider.platform == "dev"

    async def attest(self, nonce: bytes) -> Evidence:
        return await self.provider.evidence(report_data_for(self.keyset_digest, nonce),
                                            gpu_nonce_for(self.keyset_digest, nonce), self.keyset)

    def open(self, sealed: SealedRequest) -> RequestOpener:
        """The request's plaintext and its answer's sealer; a replayed or stale request is refused
        (RequestReplayed), and so is one that does not open (DecryptionFailed)."""
        now = self.clock()
        self.served.check_fresh(sealed.issued_at, now)
        opened = open_request(self.keys, self.keyset_digest.hex(), sealed)
        self.served.admit(sealed.request_id, sealed.issued_at, now)  # only ids that opened: no one burns them
        return opened

    def receipt(self, sealed: SealedRequest, sealer: ResponseSealer, usage: dict[str, Any], *,
                price_input: float, price_output: float) -> UsageReceipt:
        return sign_receipt(self._receipt_key, UsageReceipt(
            request_id=sealed.request_id, miner=self.keyset.hotkey, model=sealed.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            price_input_per_million=price_input, price_output_per_million=price_output,
            request_sha256=sealed.ciphertext_sha256(), response_sha256=sealer.response_sha256(),
            keyset_digest=self.keyset_digest.hex(), simulated=self.simulated, issued_at=int(self.clock()),
        ))
