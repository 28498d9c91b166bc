"""Hardware evidence from the Linux kernel's configfs-tsm interface (Linux 6.7+), for TDX and SEV-SNP guests.

One report entry (``/sys/kernel/config/tsm/report/<name>``): write the 64-byte report_data to ``inblob``, read
the report from ``outblob`` (a TDX quote, or a SEV-SNP attestation report) and, on SEV-SNP, the host's
certificate table from ``auxblob``; ``generation`` counts writes, so a report another process requested in
between is never returned. ``provider`` names the guest driver (``tdx_guest`` or ``sev_guest``).

SEV-SNP reports are signed by the chip's VCEK, whose certificate verifiers need. Hosts usually hand it to
the guest in the certificate table (GHCB extended guest request: entries of GUID, offset, length, ending in
an all-zero entry); where the table is empty, the VCEK for the report's chip and reported TCB comes from
AMD's Key Distribution Service (:class:`AmdKds`), cached on disk.
"""

from __future__ import annotations

import asyncio
import os
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.gpu import NvmlGpuEvidence
from veilnet.confidential.verifiers.x509chain import load_certificates
from veilnet.protocol.confidential import Evidence, Keyset

__all__ = ["AmdKds", "ConfigfsTsmProvider", "amd_product", "certificates_from_table"]

DRIVERS = {"tdx": "tdx_guest", "sev-snp": "sev_guest"}
# certificate-table GUIDs (AMD's GHCB specification); VLEK stands in for the VCEK on some clouds
_CERT_GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark",
}
_ENTRY = struct.Struct("<16sII")
_CHIP_ID = slice(0x1A0, 0x1E0)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def certificates_from_table(table: bytes) -> str | None:
    """The PEM chain (VCEK or VLEK first, then ASK, then ARK) in a SEV-SNP certificate table; None when the
    table holds no endorsement key."""
    found: dict[str, x509.Certificate] = {}
    for start in range(0, len(table) - _ENTRY.size + 1, _ENTRY.size):
        raw_guid, offset, length = _ENTRY.unpack_from(table, start)
        if raw_guid == bytes(16) and offset == 0 and length == 0:
            break
        # the table stores GUIDs in RFC 4122 order; accept the little-endian layout some tools write too
        kind = _CERT_GUIDS.get(uuid.UUID(bytes=raw_guid)) or _CERT_GUIDS.get(uuid.UUID(bytes_le=raw_guid))
        if kind is None:
            continue
        if offset + length > len(table) or length == 0:
            raise AttestationFailed(f"SEV-SNP certificate table: the {kind} entry points outside the table")
        try:
            found[kind] = load_certificates(table[offset:offset + length])[0]
        except AttestationFailed as exc:
            raise AttestationFailed(f"SEV-SNP certificate table: the {kind} entry: {exc}") from exc
    leaf = found.get("vcek") or found.get("vlek")
    if leaf is None:
        return None
    return "".join(_pem(cert) for cert in (leaf, found.get("ask"), found.get("ark")) if cert is not None)


def amd_product(report: bytes, default: str) -> str:
    """The KDS product name of the chip that signed ``report``: from its CPUID family and model (report
    version 3 and later), else ``default``."""
    (version,) = struct.unpack_from("<I", report, 0)
    if version < 3:
        return default
    family, model = report[0x188], report[0x189]
    if family == 0x19:
        return "Milan" if model < 0x10 else "Genoa"
    if family == 0x1A:
        return "Turin"
    return default


@dataclass
class AmdKds:
    """AMD's Key Distribution Service: the VCEK for a chip id and TCB, and the product's ASK/ARK chain.
    Answers are cached under ``cache_dir`` (they never change for a given chip and TCB)."""

    cache_dir: Path
    base_url: str = "https://kdsintf.amd.com"
    default_product: str = "Milan"
    timeout: float = 20.0

    async def chain_for(self, report: bytes) -> str:
        """The PEM chain (VCEK, ASK, ARK) that verifies ``report``."""
        product = amd_product(report, self.default_product)
        chip_id = report[_CHIP_ID]
        # Turin's KDS indexes chips by the first 8 bytes of the chip id
        hwid = (chip_id[:8] if product == "Turin" else chip_id).hex()
        tcb = report[0x180:0x188]
        query = f"blSPL={tcb[0]}&teeSPL={tcb[1]}&snpSPL={tcb[6]}&ucodeSPL={tcb[7]}"
        vcek = await self._get(f"/vcek/v1/{product}/{hwid}?{query}", f"vcek-{product}-{hwid}-{tcb.hex()}.der")
        chain = await self._get(f"/vcek/v1/{product}/cert_chain", f"cert_chain-{product}.pem")
        try:
            leaf = load_certificates(vcek)[0]  # AMD's VCEKs carry serial number 0; load_certificates allows it
            rest = load_certificates(chain)
        except AttestationFailed as exc:
            raise AttestationFailed(f"AMD KDS answered something that is not a certificate: {exc}") from exc
        return _pem(leaf) + "".join(_pem(cert) for cert in rest)

    async def _get(self, path: str, cache_name: str) -> bytes:
        cached = self.cache_dir / cache_name
        if cached.is_file():
            return cached.read_bytes()
        url = self.base_url.rstrip("/") + path
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session, \
                    session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise AttestationFailed(f"AMD KDS answered HTTP {response.status} for {url}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AttestationFailed(f"AMD KDS unreachable at {url}: {exc}") from exc
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        partial.write_bytes(body)
        partial.replace(cached)
        return body


@dataclass
class ConfigfsTsmProvider:
    """A TDX or SEV-SNP guest's evidence through configfs-tsm. TDX collateral is left to the verifier (PCCS);
    a SEV-SNP report travels with its VCEK chain, from the host's certificate table or else from ``kds``.
    With ``gpus``, every GPU's evidence for the derived GPU nonce goes along."""

    platform: Literal["tdx", "sev-snp"] = "tdx"
    root: Path = Path("/sys/kernel/config/tsm/report")
    kds: AmdKds | None = None
    gpus: NvmlGpuEvidence | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def evidence(self, report_data: bytes, gpu_nonce: bytes, keyset: Keyset) -> Evidence:
        async with self._lock:
            report, table = await asyncio.to_thread(self._report, report_data)
            gpu = await asyncio.to_thread(self.gpus.collect, gpu_nonce) if self.gpus is not None else []
        if self.platform == "tdx":
            return Evidence(platform="tdx", quote=report, gpu=gpu, keyset=keyset)
        chain = certificates_from_table(table) if table else None
        if chain is None:
            if self.kds is None:
                raise AttestationFailed("the host gave no VCEK certificate and no AMD KDS is configured")
            chain = await self.kds.chain_for(report)
        return Evidence(platform="sev-snp", quote=report, certificate_chain=chain, gpu=gpu, keyset=keyset)

    def _report(self, report_data: bytes) -> tuple[bytes, bytes]:
        entry = self.root / f"veilnet-{os.getpid()}"
        driver = DRIVERS[self.platform]
        try:
            entry.mkdir(exist_ok=True)
            provider = (entry / "provider").read_text().strip()
            if provider != driver:
                raise AttestationFailed(f"configfs-tsm provider is {provider!r}, not {driver}")
            before = int((entry / "generation").read_text())
            (entry / "inblob").write_bytes(report_data)
            report = (entry / "outblob").read_bytes()
            table = (entry / "auxblob").read_bytes() if self.platform == "sev-snp" else b""
            after = int((entry / "generation").read_text())
        except OSError as exc:
            raise AttestationFailed(f"no {self.platform} report from {self.root}: {exc} "
                                    f"(is this a {self.platform} guest with configfs-tsm?)") from exc
        if after != before + 1:
            raise AttestationFailed("configfs-tsm report was rewritten concurrently; retry")
        return report, table
