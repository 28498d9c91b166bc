"""NVIDIA Reference Integrity Manifests (RIMs): the signed reference values a GPU's measurements must match.

A RIM is an ISO SWID tag (XML) with one ``Resource`` per measurement index (index N is the SPDM measurement
block N + 1), each active one listing the accepted values (``Hash0``…), signed with XML-DSig (ECDSA P-384)
by a certificate whose chain, carried in the signature's ``KeyInfo``, ends at NVIDIA's RIM root. NVIDIA
publishes one RIM per VBIOS version and one per driver version; the operator supplies the files (the policy
names them), so the check runs offline.

The XML signature is verified by signxml (lxml underneath), the chain by ``x509chain``; only the signed
element is read afterwards (never the document as received, against signature wrapping). A RIM is verified
once when the policy loads; its certificates' validity is checked against the verifier's clock at each use,
so a stale RIM refuses GPUs (the operator must supply a current one) rather than vouching past its time.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from lxml import etree
from signxml.exceptions import InvalidInput, SignXMLException
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.verifiers.x509chain import verify_chain
from veilnet.errors import ConfigError

__all__ = ["ReferenceManifest", "load_rim"]

_SWID = "{http://standards.iso.org/iso/19770/-2/2015/schema.xsd}"
_HASH = "{http://www.w3.org/2001/04/xmlenc#sha384}Hash"
_DSIG = "{http://www.w3.org/2000/09/xmldsig#}"


@dataclass(frozen=True)
class ReferenceManifest:
    """A verified RIM: the version it describes (VBIOS or driver), its product, and for each SPDM measurement
    block index the accepted values (hex)."""

    name: str
    version: str
    product: str
    measurements: dict[int, tuple[str, ...]]
    valid_from: dt.datetime
    valid_until: dt.datetime

    def check(self, measured: dict[str, str], now: float) -> None:
        """AttestationFailed unless every active reference value is among ``measured`` (index -> hex) at ``now``."""
        when = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        if not self.valid_from <= when <= self.valid_until:
            raise AttestationFailed(f"RIM {self.name} is signed by a certificate valid {self.valid_from:%Y-%m-%d} to "
                                    f"{self.valid_until:%Y-%m-%d}, not at {when:%Y-%m-%d}: supply a current RIM",
                                    code="certificate_expired")
        differing = [index for index, accepted in sorted(self.measurements.items())
                     if measured.get(str(index)) not in accepted]
        if differing:
            raise AttestationFailed(f"GPU measurements {differing} differ from the reference values of RIM "
                                    f"{self.name} ({self.product} {self.version})", code="unknown_measurement")


def _signing_chain(data: bytes, name: str) -> list[x509.Certificate]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        document = etree.fromstring(data, parser=parser)
        return [x509.load_der_x509_certificate(base64.b64decode(element.text or ""))
                for element in document.iter(f"{_DSIG}X509Certificate")]
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise ConfigError(f"RIM {name} is not a signed SWID tag: {exc}") from exc


def _measurements(signed: etree._Element, name: str) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for resource in signed.iter(f"{_SWID}Resource"):
        if resource.get("type") != "Measurement" or resource.get("active") != "True":
            continue
        index = int(resource.get("index", "-1")) + 1
        count = int(resource.get("alternatives", "0"))
        values = tuple((resource.get(f"{_HASH}{i}") or "").lower() for i in range(count))
        if index < 1 or not values or not all(values):
            raise ConfigError(f"RIM {name} has a measurement without an index or values")
        out[index] = values
    return out


def load_rim(data: bytes, roots: Sequence[x509.Certificate], *, name: str) -> ReferenceManifest:
    """The RIM in ``data``, its signature and certificate chain (to one of ``roots``) verified; ConfigError
    naming the file otherwise."""
    chain = _signing_chain(data, name)
    if not chain:
        raise ConfigError(f"RIM {name} carries no signing certificate")
    valid_from = max(c.not_valid_before_utc for c in chain)
    valid_until = min(c.not_valid_after_utc for c in chain)
    if valid_from > valid_until:
        raise ConfigError(f"RIM {name}: its certificates are never valid at the same time")
    try:
        verify_chain(chain, roots, valid_from.timestamp(), what=f"RIM {name}")
        config = SignatureConfiguration(verification_time=valid_from)
        result = XMLVerifier().verify(data, x509_cert=chain[0], expect_config=config)
        signed = result.signed_xml if isinstance(result, VerifyResult) else None
        if signed is None:
            raise ValueError("not one signed SWID tag")
        meta = next(signed.iter(f"{_SWID}Meta"))
        measurements = _measurements(signed, name)
    except (AttestationFailed, SignXMLException, InvalidInput, StopIteration, ValueError) as exc:
        raise ConfigError(f"RIM {name} does not verify: {exc}") from exc
    return ReferenceManifest(name=name, version=meta.get("colloquialVersion", ""), product=meta.get("product", ""),
                             measurements=measurements, valid_from=valid_from, valid_until=valid_until)
