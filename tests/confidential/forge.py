"""Test-signed evidence in the exact formats of the real samples: a test root stands in for AMD's ARK or
NVIDIA's Device Identity CA, and keys it certifies re-sign real report bytes after a field is changed.

Real evidence cannot be re-signed, so this is how a test reaches the checks that come after the signature
(TCB against the VCEK, chip id, VMPL, debug, device type, GPU measurements) with a signature that verifies.
Verifiers pin the test root, never a vendor's, for such evidence.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veilnet.confidential.verifiers.spdm import parse_measurements

_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
_UNTIL = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)


def issue(common_name: str, issuer: Issued | None = None, *, ca: bool = True,
          extensions: Iterable[x509.Extension[x509.ExtensionType]] = (),
          not_before: dt.datetime = _FROM, not_after: dt.datetime = _UNTIL) -> Issued:
    """A P-384 key and its certificate, self-signed when ``issuer`` is None."""
    key = ec.generate_private_key(ec.SECP384R1())
    builder = (x509.CertificateBuilder().subject_name(_name(common_name))
               .issuer_name(issuer.cert.subject if issuer else _name(common_name))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    signer = issuer.key if issuer else key
    return Issued(key, builder.sign(signer, hashes.SHA384()))


def vendor_extensions(template: x509.Certificate, **replace: bytes) -> list[x509.Extension[x509.ExtensionType]]:
    """The template's vendor extensions (AMD's 1.3.6.1.4.1.3704.*), some replaced by OID suffix: ``hwid``,
    ``bootloader``, ``tee``, ``snp``, ``microcode``, ``fmc`` (raw extension values)."""
    suffixes = {"hwid": "1.4", "bootloader": "1.3.1", "tee": "1.3.2", "snp": "1.3.3", "microcode": "1.3.8",
                "fmc": "1.3.9"}
    wanted = {f"1.3.6.1.4.1.3704.{suffixes[k]}": v for k, v in replace.items()}
    out = []
    for ext in template.extensions:
        oid = ext.oid.dotted_string
        if isinstance(ext.value, x509.UnrecognizedExtension) and oid.startswith("1.3.6.1.4.1.3704."):
            value = wanted.pop(oid, ext.value.value)
            out.append(x509.Extension(ext.oid, ext.critical, x509.UnrecognizedExtension(ext.oid, value)))
    out += [x509.Extension(x509.ObjectIdentifier(o), False, x509.UnrecognizedExtension(x509.ObjectIdentifier(o), v))
            for o, v in wanted.items()]
    return out


def der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def sign_snp_report(report: bytes | bytearray, key: ec.EllipticCurvePrivateKey) -> bytes:
    """``report`` with its signature (0x2A0: r, s as 72-byte little-endian) made by ``key``."""
    signed = bytes(report[:0x2A0])
    r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA384())))
    return signed + r.to_bytes(72, "little") + s.to_bytes(72, "little") + bytes(report[0x2A0 + 144:])


def set_u32(report: bytearray, offset: int, value: int) -> None:
    struct.pack_into("<I", report, offset, value)


def sign_gpu_report(report: bytes, key: ec.EllipticCurvePrivateKey, *, nonce: bytes | None = None) -> bytes:
    """A real SPDM report with (optionally) the requester nonce replaced, re-signed by ``key``."""
    body = bytearray(report)
    if nonce is not None:
        body[4:36] = nonce
    spdm = parse_measurements(bytes(body), 96)
    r, s = decode_dss_signature(key.sign(spdm.signed, ec.ECDSA(hashes.SHA384())))
    return spdm.signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")


def gpu_chain(hwmodel: str = "GH100 A01 GSP BROM") -> tuple[Issued, Issued, bytes]:
    """(root, attestation key, chain PEM): key ← device identity named ``hwmodel`` ← root."""
    root = issue("Test Device Identity CA")
    identity = issue(hwmodel, root)
    leaf = issue(hwmodel.replace("BROM", "FMC LF"), identity, ca=False)
    return root, leaf, leaf.pem + identity.pem + root.pem
