"""The real public evidence in tests/data/attestation (its README: origin, licence, what each one proves)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from tests.conftest import DATA_DIR
from veilnet.confidential.verifiers import load_certificates

ATTESTATION = DATA_DIR / "attestation"
TDX_DIR, SEV_DIR, NVIDIA_DIR = ATTESTATION / "tdx", ATTESTATION / "sev-snp", ATTESTATION / "nvidia"
PINNED = 1750331763  # 2025-06-19: inside the dcap-qvl sample collateral's validity (to 2025-07-19)


@dataclass(frozen=True)
class TdxSample:
    name: str
    quote: bytes
    collateral: dict[str, Any] | None
    now: int  # a time at which its collateral is valid


def tdx(name: str = "dcapqvl_tdx_quote", now: int = PINNED) -> TdxSample:
    collateral = TDX_DIR / f"{Path(name).stem}_collateral.json"
    return TdxSample(name, (TDX_DIR / name).read_bytes(),
                     json.loads(collateral.read_text()) if collateral.is_file() else None, now)


TDX_VERIFIABLE = {  # quote -> a time its collateral is valid at
    "dcapqvl_tdx_quote": PINNED,
    "dcapqvl_tdx_quote_td15ex": 1791421786,  # an hour after its TCB info was issued (2026-10-08)
}
TDX_QUOTES_ONLY = ["gotdx_tdx_prod_quote_SPR_E4.dat", "gotdx_quote_v5_sample.dat", "gotdx_cos113_quote.dat",
                   "trustee_tdx_quote_4.dat", "trustee_tdx_quote_6.dat", "automata_alibaba_quote_5.dat"]


@dataclass(frozen=True)
class SevSample:
    name: str
    report: bytes
    vek: bytes  # the VCEK or VLEK, PEM
    ca: bytes  # its ASK/ASVK then ARK, PEM
    now: int

    @property
    def chain(self) -> bytes:
        """VCEK/VLEK then ASK/ASVK, as evidence carries it (the ARK is pinned)."""
        return self.vek + self.ca.split(b"-----END CERTIFICATE-----", 1)[0] + b"-----END CERTIFICATE-----\n"

    @property
    def roots(self) -> list[x509.Certificate]:
        return load_certificates(self.ca)[-1:]


def _pem(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return b"".join(c.public_bytes(Encoding.PEM) for c in load_certificates(path.read_bytes()))


def sev(name: str) -> SevSample:
    """One of the SEV-SNP samples: gosev (Milan, debug policy), virtee (Milan), trustee (Milan, reported TCB
    below current), trustee_vlek (Milan, VLEK, VMPL 1)."""
    milan = (SEV_DIR / "gosev_ask_ark_milan.pem").read_bytes()
    if name == "gosev":
        return SevSample(name, (SEV_DIR / "gosev_attestation.bin").read_bytes(), _pem(SEV_DIR / "gosev_vcek.testcer"),
                         milan, PINNED)
    if name == "virtee":
        return SevSample(name, bytes.fromhex((SEV_DIR / "virtee_report_milan.hex").read_text().strip()),
                         _pem(SEV_DIR / "virtee_vcek_milan.der"), milan, PINNED)
    if name == "trustee":
        return SevSample(name, (SEV_DIR / "trustee_test-report.bin").read_bytes(),
                         _pem(SEV_DIR / "trustee_test-vcek.der"), milan, PINNED)
    if name == "trustee_vlek":
        return SevSample(name, (SEV_DIR / "trustee_test-vlek-report.bin").read_bytes(),
                         _pem(SEV_DIR / "trustee_test-vlek.der"), (SEV_DIR / "gosev_ask_ark_milan_vlek.pem").read_bytes(),
                         PINNED)
    raise KeyError(name)


SEV_SAMPLES = ["gosev", "virtee", "trustee", "trustee_vlek"]


@dataclass(frozen=True)
class GpuSample:
    name: str
    report: bytes
    chain: bytes

    @property
    def nonce(self) -> bytes:
        return self.report[4:36]


GPU_SAMPLES = {
    "gonvtrust": ("gonvtrust_attestationReport.hex", "gonvtrust_gpuAkCertChain.pem"),
    "nvtrust": ("nvtrust_hopperAttestationReport.txt", "nvtrust_hopperCertChain.txt"),
    "trustee": ("trustee_hopper_coco_report1.txt", "trustee_hopper_coco_certs1.txt"),  # one byte after the SPDM
}


def gpu(name: str = "gonvtrust") -> GpuSample:
    report, chain = GPU_SAMPLES[name]
    return GpuSample(name, bytes.fromhex("".join((NVIDIA_DIR / report).read_text().split())),
                     (NVIDIA_DIR / chain).read_bytes())


def nvidia_root() -> list[x509.Certificate]:
    return load_certificates((NVIDIA_DIR / "nvtrust_verifier_device_root.pem").read_bytes())
