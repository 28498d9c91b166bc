"""NVIDIA GPU evidence: an SPDM GET_MEASUREMENTS exchange signed by the GPU's attestation key.

The report is the SPDM request (whose nonce is the verifier's) and the response (``spdm.py``); the
ECDSA-P384 signature (r ‖ s, big-endian, SHA-384) sits where the response's lengths put it. The attestation
key's certificate chain must end at a pinned NVIDIA root (the NVIDIA Device Identity CA). The device is named
by the identity certificate above the leaf, NVIDIA-signed ("GH100 A01 GSP BROM" for an H100, "LS_10 A01 FSP
BROM" for an NVSwitch, whose chain ends at the same root): only GPU chips a policy lists pass as GPUs.

What the report does not carry: the confidential-computing mode (a GPU with CC off has no CC attestation
path; one in devtools mode reports measurements that differ from the reference values, so the policy's GPU
measurement allowlist is what catches it), and the certificates' revocation status (OCSP needs NVIDIA's
service at verification time; not checked).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from veilnet.confidential.claims import GpuClaims
from veilnet.confidential.errors import AttestationFailed, EvidenceMalformed
from veilnet.confidential.verifiers.spdm import parse_measurements
from veilnet.confidential.verifiers.x509chain import load_certificates, verify_chain

__all__ = ["NVSWITCH_CHIPS", "verify_nvidia_gpu"]

_SIGNATURE_BYTES = 96  # ECDSA P-384: r and s, 48 bytes each
NVSWITCH_CHIPS = frozenset({"LS_10", "LS10"})  # NVSwitch identity names: never GPU evidence
_DRIVER_VERSION, _VBIOS_VERSION = 3, 6  # NVIDIA's opaque data field types


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def _text(field: bytes | None) -> str | None:
    return field.split(b"\x00", 1)[0].decode("ascii", errors="replace") if field else None


def _vbios(field: bytes | None) -> str | None:
    if field is None or len(field) < 5:
        return None
    return f"{field[3]:02X}.{field[2]:02X}.{field[1]:02X}.{field[0]:02X}.{field[4]:02X}"


def _check_signature(chain: Sequence[x509.Certificate], signed: bytes, signature: bytes) -> None:
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise AttestationFailed("GPU attestation key is not a P-384 key", code="certificate_invalid")
    r, s = int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError) as exc:
        raise AttestationFailed("GPU measurement report signature does not verify", code="signature_invalid") from exc


def verify_nvidia_gpu(report: bytes, certificate_chain: bytes, expected_nonce: bytes,
                      anchors: Sequence[x509.Certificate], now: float,
                      gpu_chips: Sequence[str] = ("GH100", "GB100")) -> GpuClaims:
    """The GPU's claims; AttestationFailed unless the report is signed by a GPU of ``gpu_chips`` chained to a
    pinned NVIDIA root and answers ``expected_nonce``."""
    spdm = parse_measurements(report, _SIGNATURE_BYTES)
    chain = load_certificates(certificate_chain)
    verify_chain(chain, anchors, now, what="GPU attestation key")
    _check_signature(chain, spdm.signed, spdm.signature)
    if not hmac.compare_digest(spdm.requester_nonce, expected_nonce):
        raise AttestationFailed("GPU evidence answers another nonce (not this challenge)", code="nonce_mismatch")
    if len(chain) < 2:
        raise EvidenceMalformed("GPU certificate chain has no device identity certificate above the key")
    hwmodel = _common_name(chain[1])
    chip = hwmodel.split(" ", 1)[0]
    if chip in NVSWITCH_CHIPS:
        raise AttestationFailed(f"the attested device is an NVSwitch ({hwmodel}), not a GPU", code="device_not_gpu")
    if chip not in gpu_chips:
        raise AttestationFailed(f"the attested device is a {hwmodel}; accepted GPU chips: {', '.join(gpu_chips)}",
                                code="gpu_model_not_accepted")
    return GpuClaims(hwmodel=hwmodel, chip=chip, driver_version=_text(spdm.opaque.get(_DRIVER_VERSION)),
                     vbios_version=_vbios(spdm.opaque.get(_VBIOS_VERSION)),
                     measurements={str(index): value.hex() for index, value in sorted(spdm.blocks.items())})
