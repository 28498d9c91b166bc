"""Rewriting the certification data of a real TDX quote (Intel's quote v4/v5 layout), to build the malformed
PCK certificate data a hostile miner can send while every signature over the TD report stays valid.

Quote: header (48 bytes); v4: TD report (584); v5: body type (2), body size (4), body; then the signature
data length (4) and the signature data: ECDSA signature (64), attestation key (64), certification data
type 6 (2), size (4), and inside it the QE report (384), its signature (64), QE auth data (size 2 + data),
then the inner certification data: type (2; 5 = PCK certificate chain as PEM), size (4), data.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.serialization import Encoding

from veilnet.confidential.verifiers import load_certificates


def _body_end(quote: bytes) -> int:
    (version,) = struct.unpack_from("<H", quote, 0)
    if version == 4:
        return 48 + 584
    (size,) = struct.unpack_from("<I", quote, 50)
    return 48 + 6 + size


def split(quote: bytes) -> tuple[bytes, bytes, int, bytes]:
    """(signed part and the two signature-data fields before the outer certification data, the QE part before
    the inner certification data, inner type, inner data)."""
    end = _body_end(quote)
    outer = end + 4 + 128
    outer_type, outer_size = struct.unpack_from("<HI", quote, outer)
    assert outer_type == 6
    qe = quote[outer + 6:outer + 6 + outer_size]
    (auth,) = struct.unpack_from("<H", qe, 448)
    inner_at = 448 + 2 + auth
    inner_type, inner_size = struct.unpack_from("<HI", qe, inner_at)
    return quote[:outer], qe[:inner_at], inner_type, qe[inner_at + 6:inner_at + 6 + inner_size]


def with_certification_data(quote: bytes, cert_type: int, data: bytes) -> bytes:
    """``quote`` with its inner certification data replaced (sizes fixed up, signatures untouched; whatever
    followed the signature data follows it still)."""
    head, qe, _, _ = split(quote)
    inner = qe + struct.pack("<HI", cert_type, len(data)) + data
    outer = struct.pack("<HI", 6, len(inner)) + inner
    end = _body_end(quote)
    (length,) = struct.unpack_from("<I", quote, end)
    signature_data = head[end + 4:] + outer
    return head[:end] + struct.pack("<I", len(signature_data)) + signature_data + quote[end + 4 + length:]


def pck_pems(quote: bytes) -> list[bytes]:
    """The quote's PCK chain as one PEM block per certificate (leaf first)."""
    _, _, _, data = split(quote)
    return [c.public_bytes(Encoding.PEM) for c in load_certificates(data.rstrip(b"\x00"))]
