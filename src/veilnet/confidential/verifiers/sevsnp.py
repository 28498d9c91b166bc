"""AMD SEV-SNP attestation reports: the ECDSA-P384 signature by the VCEK (or VLEK) and its chain to AMD.

Report layout (SEV-SNP ABI, ATTESTATION_REPORT, 1184 bytes, little-endian): version 0x00, policy 0x08 (bit 19
= debug allowed), VMPL 0x30, signature algorithm 0x34 (1 = ECDSA P-384 with SHA-384), current TCB 0x38,
key info 0x48 (bits 2..4: signing key, 0 = VCEK, 1 = VLEK), report_data 0x50 (64), measurement 0x90 (48),
host_data 0xC0 (32), id/author key digests 0xE0/0x110, reported TCB 0x180, CPUID family/model/stepping
0x188 (version 3+), chip_id 0x1A0 (64), committed TCB 0x1E0, launch TCB 0x1F0, signature 0x2A0 (r and s,
72 bytes each, little-endian) over bytes [0, 0x2A0).

A TCB version is 8 bytes whose layout depends on the product: Milan and Genoa put bootloader, TEE, SNP and
microcode SPLs at bytes 0, 1, 6, 7; Turin puts FMC, bootloader, TEE, SNP at 0..3 and microcode at 7. The
product comes from the VCEK itself (its AMD-signed product name extension), cross-checked against the
report's CPUID on version 3+. The VCEK certifies one TCB (its SPL extensions) and one chip (its hwID: the
64-byte chip id, or on Turin its first 8 bytes); the report's reported TCB and chip id must be those.

The TCB status compares the reported TCB (the one the signing key belongs to) with the TCB the firmware runs
(current): equal is ``UpToDate``; below is ``OutOfDate`` (the host signs with an older TCB's key than it
could); above is refused, as no firmware reports a TCB it does not run.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.errors import AttestationFailed, EvidenceMalformed
from veilnet.confidential.verifiers.x509chain import load_certificates, verify_chain

__all__ = ["REPORT_SIZE", "SnpReport", "parse_report", "tcb_components", "verify_sev_snp"]

REPORT_SIZE = 0x4A0
_SIGNED_END = 0x2A0
_POLICY_DEBUG = 1 << 19
_ECDSA_P384_SHA384 = 1
_VCEK, _VLEK = 0, 1
# VCEK/VLEK certificate extensions (AMD's VCEK specification)
_OID_TCB = {"bootloader": "1.3.6.1.4.1.3704.1.3.1", "tee": "1.3.6.1.4.1.3704.1.3.2",
            "snp": "1.3.6.1.4.1.3704.1.3.3", "microcode": "1.3.6.1.4.1.3704.1.3.8", "fmc": "1.3.6.1.4.1.3704.1.3.9"}
_OID_PRODUCT = "1.3.6.1.4.1.3704.1.2"
_OID_HWID = "1.3.6.1.4.1.3704.1.4"
_TURIN_LAYOUT = frozenset({"Turin", "Venice"})
# CPU family -> (model range, product), from the CPUID values AMD documents per generation
_CPUID_PRODUCTS = {0x19: ((range(0x00, 0x10), "Milan"), (range(0x10, 0x20), "Genoa"), (range(0xA0, 0xB0), "Genoa")),
                   0x1A: ((range(0x00, 0x12), "Turin"),)}


def tcb_components(raw: bytes, product: str) -> dict[str, int]:
    """An 8-byte TCB_VERSION as named SPLs, in ``product``'s layout."""
    if product in _TURIN_LAYOUT:
        return {"fmc": raw[0], "bootloader": raw[1], "tee": raw[2], "snp": raw[3], "microcode": raw[7]}
    return {"bootloader": raw[0], "tee": raw[1], "snp": raw[6], "microcode": raw[7]}


@dataclass(frozen=True)
class SnpReport:
    """The fields of an attestation report this verifier uses (``parse_report``)."""

    raw: bytes
    version: int
    policy: int
    vmpl: int
    signature_algorithm: int
    signing_key: int
    current_tcb: bytes
    reported_tcb: bytes
    cpuid: tuple[int, int] | None  # family, model (version 3+)
    chip_id: bytes

    @property
    def report_data(self) -> bytes:
        return self.raw[0x50:0x90]

    @property
    def measurements(self) -> dict[str, str]:
        r = self.raw
        return {"measurement": r[0x90:0xC0].hex(), "host_data": r[0xC0:0xE0].hex(),
                "id_key_digest": r[0xE0:0x110].hex(), "author_key_digest": r[0x110:0x140].hex()}


def parse_report(report: bytes) -> SnpReport:
    if len(report) != REPORT_SIZE:
        raise EvidenceMalformed(f"SEV-SNP report is {len(report)} bytes, expected {REPORT_SIZE}")
    version, _guest_svn, policy = struct.unpack_from("<IIQ", report, 0)
    if version < 2:
        raise AttestationFailed(f"SEV-SNP report version {version} is not supported (need 2 or later)",
                                code="unsupported_evidence")
    vmpl, algorithm = struct.unpack_from("<II", report, 0x30)
    (key_info,) = struct.unpack_from("<I", report, 0x48)
    cpuid = (report[0x188], report[0x189]) if version >= 3 else None
    return SnpReport(raw=report, version=version, policy=policy, vmpl=vmpl, signature_algorithm=algorithm,
                     signing_key=(key_info >> 2) & 0x7, current_tcb=report[0x38:0x40],
                     reported_tcb=report[0x180:0x188], cpuid=cpuid, chip_id=report[0x1A0:0x1E0])


def _extension(cert: x509.Certificate, oid: str) -> bytes | None:
    try:
        extensions = cert.extensions
    except ValueError as exc:  # duplicate or undecodable extensions
        raise EvidenceMalformed(f"SEV-SNP: the VCEK's extensions cannot be read: {exc}") from exc
    for ext in extensions:
        if ext.oid.dotted_string == oid and isinstance(ext.value, x509.UnrecognizedExtension):
            return ext.value.value
    return None


def _der_integer(value: bytes, name: str) -> int:
    # a small DER INTEGER: 02 len bytes
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        raise EvidenceMalformed(f"SEV-SNP: the VCEK's {name} extension is not a DER integer")
    return int.from_bytes(value[2:], "big")


def _product(vek: x509.Certificate, report: SnpReport) -> str:
    raw = _extension(vek, _OID_PRODUCT)
    if raw is None or len(raw) < 2 or raw[0] != 0x16 or raw[1] != len(raw) - 2:  # IA5String
        raise EvidenceMalformed("SEV-SNP: the VCEK names no product")
    product = raw[2:].decode("ascii", errors="replace").split("-", 1)[0]
    if report.cpuid is not None:
        family, model = report.cpuid
        cpu = next((name for models, name in _CPUID_PRODUCTS.get(family, ()) if model in models), None)
        if cpu != product:
            raise AttestationFailed(f"SEV-SNP: the report's CPU (family {family:#x}, model {model:#x}) is not a "
                                    f"{product}, the VCEK's product", code="chip_id_mismatch")
    return product


def _hwid(vek: x509.Certificate) -> bytes | None:
    raw = _extension(vek, _OID_HWID)
    if raw is not None and len(raw) > 2 and raw[0] == 0x04 and raw[1] == len(raw) - 2:  # a DER OCTET STRING
        return raw[2:]
    return raw


def _check_signing_key(vek: x509.Certificate, report: SnpReport, product: str) -> None:
    names = vek.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    kind = names[0].value if names else ""
    if report.signing_key == _VLEK:
        if kind != "SEV-VLEK":
            raise AttestationFailed(f"SEV-SNP: the report is signed by a VLEK, the certificate is a {kind!r}",
                                    code="certificate_invalid")
        return
    if report.signing_key != _VCEK or kind != "SEV-VCEK":
        raise AttestationFailed(f"SEV-SNP: signing key {report.signing_key} with a {kind!r} certificate is not "
                                "a VCEK or VLEK signature", code="unsupported_evidence")
    hwid = _hwid(vek)
    if hwid is None:
        raise AttestationFailed("SEV-SNP: the VCEK carries no hardware id", code="certificate_invalid")
    # Turin VCEKs name the chip by the first 8 bytes of its id; the report's chip id is zero after them
    expected = hwid + bytes(64 - len(hwid)) if product in _TURIN_LAYOUT and len(hwid) == 8 else hwid
    if expected != report.chip_id:
        raise AttestationFailed("SEV-SNP: the report's chip id is not the VCEK's", code="chip_id_mismatch")


def _check_tcb(vek: x509.Certificate, reported: dict[str, int]) -> None:
    for name, value in reported.items():
        raw = _extension(vek, _OID_TCB[name])
        certified = _der_integer(raw, name) if raw is not None else None
        if certified != value:
            raise AttestationFailed(f"SEV-SNP: reported TCB {name}={value}, but the VCEK certifies {certified}",
                                    code="tcb_mismatch")


def _tcb_status(reported: dict[str, int], current: dict[str, int]) -> str:
    if any(reported[name] > current[name] for name in reported):
        raise AttestationFailed(f"SEV-SNP: reported TCB {reported} is above the TCB the firmware runs {current}",
                                code="tcb_mismatch")
    return "UpToDate" if reported == current else "OutOfDate"


def _check_signature(vek: x509.Certificate, report: SnpReport) -> None:
    if report.signature_algorithm != _ECDSA_P384_SHA384:
        raise AttestationFailed(f"SEV-SNP signature algorithm {report.signature_algorithm} is not ECDSA P-384",
                                code="unsupported_evidence")
    key = vek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise AttestationFailed("SEV-SNP: the VCEK is not a P-384 key", code="certificate_invalid")
    sig = report.raw[_SIGNED_END:_SIGNED_END + 144]
    r, s = int.from_bytes(sig[:72], "little"), int.from_bytes(sig[72:], "little")
    try:
        key.verify(encode_dss_signature(r, s), report.raw[:_SIGNED_END], ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError) as exc:
        raise AttestationFailed("SEV-SNP report signature does not verify with the VCEK",
                                code="signature_invalid") from exc


def verify_sev_snp(report: bytes, certificate_chain: bytes, anchors: Sequence[x509.Certificate],
                   now: float) -> PlatformClaims:
    """Claims of a report signed by the first certificate of ``certificate_chain`` (VCEK or VLEK, then the
    ASK/ASVK), which must chain to one of ``anchors`` (AMD's ARKs)."""
    parsed = parse_report(report)
    chain = load_certificates(certificate_chain)
    vek = chain[0]
    verify_chain(chain, anchors, now, what="SEV-SNP VCEK")
    _check_signature(vek, parsed)
    product = _product(vek, parsed)
    _check_signing_key(vek, parsed, product)
    reported = tcb_components(parsed.reported_tcb, product)
    _check_tcb(vek, reported)
    return PlatformClaims(
        platform="sev-snp", simulated=False, measurements=parsed.measurements,
        tcb_status=_tcb_status(reported, tcb_components(parsed.current_tcb, product)),
        debug=bool(parsed.policy & _POLICY_DEBUG), report_data=parsed.report_data, tcb=reported, vmpl=parsed.vmpl,
    )
