"""AMD SEV-SNP attestation reports: the ECDSA-P384 signature by the VCEK and the VCEK's chain to AMD.

Report layout (SEV-SNP ABI, ATTESTATION_REPORT, 1184 bytes): policy at 0x08 (bit 19 = debug allowed),
report_data at 0x50 (64 bytes), measurement at 0x90 (48), reported_tcb at 0x180, chip_id at 0x1A0 (64),
signature at 0x2A0 (r and s, 72 bytes each, little-endian) over bytes [0, 0x2A0).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.verifiers.x509chain import load_certificates, verify_chain

__all__ = ["REPORT_SIZE", "verify_sev_snp"]

REPORT_SIZE = 0x4A0
_SIGNED_END = 0x2A0
_POLICY_DEBUG = 1 << 19
# VCEK certificate extensions (AMD's VCEK specification): TCB components and the chip id
_OID_TCB = {"bootloader": "1.3.6.1.4.1.3704.1.3.1", "tee": "1.3.6.1.4.1.3704.1.3.2",
            "snp": "1.3.6.1.4.1.3704.1.3.3", "microcode": "1.3.6.1.4.1.3704.1.3.8"}
_OID_HWID = "1.3.6.1.4.1.3704.1.4"


def _tcb_components(raw: int) -> dict[str, int]:
    b = raw.to_bytes(8, "little")
    return {"bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


def _extension_bytes(cert: x509.Certificate, oid: str) -> bytes | None:
    for ext in cert.extensions:
        if ext.oid.dotted_string == oid and isinstance(ext.value, x509.UnrecognizedExtension):
            return ext.value.value
    return None


def _der_integer(value: bytes) -> int:
    # a small DER INTEGER: 02 len bytes
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        raise AttestationFailed("SEV-SNP: VCEK TCB extension is not a DER integer")
    return int.from_bytes(value[2:], "big")


def verify_sev_snp(report: bytes, certificate_chain: bytes, anchors: Sequence[x509.Certificate],
                   now: float) -> PlatformClaims:
    if len(report) != REPORT_SIZE:
        raise AttestationFailed(f"SEV-SNP report is {len(report)} bytes, expected {REPORT_SIZE}")
    version, _guest_svn, policy = struct.unpack_from("<IIQ", report, 0)
    if version < 2:
        raise AttestationFailed(f"SEV-SNP report version {version} is not supported (need 2 or later)")
    chain = load_certificates(certificate_chain)
    vcek = chain[0]
    verify_chain(chain, anchors, now, what="SEV-SNP VCEK")
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise AttestationFailed("SEV-SNP: the VCEK is not a P-384 key")
    sig = report[_SIGNED_END:_SIGNED_END + 144]
    r, s = int.from_bytes(sig[:72], "little"), int.from_bytes(sig[72:], "little")
    try:
        key.verify(encode_dss_signature(r, s), report[:_SIGNED_END], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise AttestationFailed("SEV-SNP report signature does not verify with the VCEK",
                                code="signature_invalid") from exc
    (reported_tcb,) = struct.unpack_from("<Q", report, 0x180)
    tcb = _tcb_components(reported_tcb)
    for name, oid in _OID_TCB.items():
        value = _extension_bytes(vcek, oid)
        if value is None or _der_integer(value) != tcb[name]:
            raise AttestationFailed(f"SEV-SNP: reported TCB {name}={tcb[name]} does not match the VCEK")
    hwid = _extension_bytes(vcek, _OID_HWID)
    if hwid is not None and hwid != report[0x1A0:0x1E0]:
        raise AttestationFailed("SEV-SNP: the report's chip id is not the VCEK's")
    return PlatformClaims(
        platform="sev-snp", simulated=False,
        measurements={"measurement": report[0x90:0xC0].hex(), "host_data": report[0xC0:0xE0].hex()},
        tcb_status="UpToDate", debug=bool(policy & _POLICY_DEBUG), report_data=report[0x50:0x90], tcb=tcb,
    )
