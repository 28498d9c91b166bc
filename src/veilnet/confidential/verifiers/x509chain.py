"""Certificate-chain checks shared by the SEV-SNP and NVIDIA verifiers (``cryptography`` does the math)."""

from __future__ import annotations

import datetime as dt
import itertools
import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from veilnet.confidential.errors import AttestationFailed, EvidenceMalformed

__all__ = ["load_certificates", "verify_chain"]


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """PEM (one or more) or a single DER certificate. Vendor certificates such as AMD's VCEK carry serial
    number 0, which ``cryptography`` warns about; they are still the vendor's real certificates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                certificates = x509.load_pem_x509_certificates(data)
            else:
                certificates = [x509.load_der_x509_certificate(data)]
            for cert in certificates:  # parsed lazily: a broken name or extension must fail here, not later
                _ = cert.subject, cert.issuer, cert.extensions, cert.not_valid_before_utc, cert.not_valid_after_utc
        except (ValueError, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            # the last three are not ValueErrors
            raise EvidenceMalformed(f"certificate cannot be parsed: {exc}") from exc
    if not certificates:
        raise EvidenceMalformed("no certificate in the certificate chain")
    return certificates


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def verify_chain(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], now: float,
                 *, what: str) -> None:
    """Leaf first. Each certificate must be valid at ``now`` and signed by the next; the chain must end at
    a pinned anchor (the last certificate is an anchor, or an anchor signed it)."""
    if not chain:
        raise EvidenceMalformed(f"{what}: empty certificate chain")
    if not anchors:
        raise AttestationFailed(f"{what}: no trusted root certificate is pinned; configure one", code="no_trust_anchor")
    when = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    pinned = {_fingerprint(a): a for a in anchors}
    for cert in chain:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise AttestationFailed(f"{what}: certificate {cert.subject.rfc4514_string()} is not valid at {when:%Y-%m-%d} "
                                    f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})",
                                    code="certificate_expired")
    for child, parent in itertools.pairwise(chain):
        _check_issued(child, parent, what)
    last = chain[-1]
    if _fingerprint(last) in pinned:
        return
    issuers = [anchor for anchor in anchors if anchor.subject == last.issuer]
    refused: AttestationFailed | None = None
    for anchor in issuers:  # several pinned roots may share a name (AMD's per-product ARKs do not, test roots may)
        try:
            _check_issued(last, anchor, what)
            return
        except AttestationFailed as exc:
            refused = exc
    if refused is not None:
        raise refused
    raise AttestationFailed(f"{what}: certificate chain does not end at a pinned root "
                            f"(last issuer {last.issuer.rfc4514_string()})", code="untrusted_root")


def _check_issued(child: x509.Certificate, parent: x509.Certificate, what: str) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise AttestationFailed(f"{what}: {child.subject.rfc4514_string()} is not signed by "
                                f"{parent.subject.rfc4514_string()} ({type(exc).__name__})",
                                code="certificate_invalid") from exc
