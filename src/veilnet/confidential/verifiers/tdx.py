"""Intel TDX quotes, verified by dcap-qvl against Intel's root CA with PCK/TCB/QE collateral.

Collateral is Intel-signed, so it may come from the evidence itself, from files (``<fmspc>.json`` in a
directory, as dcap-qvl serialises it) or from a PCCS; dcap-qvl checks its signatures, CRLs and validity
at the verifier's clock.

Before dcap-qvl runs, the quote's own structure is checked here so that every refusal has a named reason
(dcap-qvl answers every failure with one ``ValueError``): the quote must carry its PCK certificate chain
(certification data type 5) starting with the PCK leaf, those certificates and the collateral must be valid
at the verifier's clock, and the TD must not be one the policy refuses (debug, or bound to a service TD the
policy does not name). dcap-qvl 0.7's Python binding refuses every debug TD and every TD bound to a service
TD (it offers no ``allow_debug``/``allow_service_td``), so a policy that allows them still sees those quotes
refused, as ``quote_invalid``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dcap_qvl
from cryptography import x509

from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.errors import AttestationFailed, EvidenceMalformed
from veilnet.confidential.verifiers.x509chain import load_certificates

__all__ = ["TdxCollateralSource", "TdxScreen", "verify_tdx"]

_TD_ATTRIBUTES_DEBUG = 0x01  # TDATTRIBUTES bit 0 (TUD.DEBUG)
_NO_SERVICE_TD = "00" * 48
_SGX_EXTENSION = x509.ObjectIdentifier("1.2.840.113741.1.13.1")  # on every PCK leaf certificate
_MEASUREMENTS = ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "mr_config_id")
_COLLATERAL_ERRORS = (ValueError, TypeError, KeyError, RuntimeError, OSError)


@dataclass(frozen=True)
class TdxCollateralSource:
    """Where collateral comes from when the evidence carries none: a directory of files, then a PCCS (which
    has ``pccs_timeout`` seconds to answer: dcap-qvl's own client would wait three minutes)."""

    directory: Path | None = None
    pccs_url: str | None = None
    pccs_timeout: float = 30.0

    async def collateral(self, quote: bytes, fmspc: str, offered: dict[str, Any] | None) -> Any:
        if offered is not None:
            return _parse_collateral(json.dumps(offered), "the evidence")
        if self.directory is not None:
            path = self.directory / f"{fmspc.upper()}.json"
            if path.is_file():
                return _parse_collateral(path.read_text(), str(path))
        if self.pccs_url:
            try:
                async with asyncio.timeout(self.pccs_timeout):
                    return await dcap_qvl.get_collateral(self.pccs_url, quote)
            except TimeoutError as exc:
                raise AttestationFailed(f"the PCCS at {self.pccs_url} did not answer within {self.pccs_timeout:g} s "
                                        "(TDX collateral)", code="collateral_unavailable") from exc
            except _COLLATERAL_ERRORS as exc:
                raise AttestationFailed(f"TDX collateral could not be fetched from {self.pccs_url}: {exc}",
                                        code="collateral_unavailable") from exc
        raise AttestationFailed(f"no TDX collateral for FMSPC {fmspc}: the evidence carries none and no "
                                "collateral directory or PCCS URL is configured", code="collateral_missing")


@dataclass(frozen=True)
class TdxScreen:
    """What the policy accepts of a TD before its quote is verified: debug, and non-zero MRSERVICETDs (hex)."""

    allow_debug: bool = False
    service_tds: Collection[str] = ()


@dataclass(frozen=True)
class _Quote:
    parsed: Any  # dcap_qvl.Quote
    fmspc: str
    pck_chain: list[x509.Certificate]
    debug: bool
    mr_service_td: str


def _parse_collateral(text: str, where: str) -> Any:
    try:
        return dcap_qvl.QuoteCollateralV3.from_json(text)
    except _COLLATERAL_ERRORS as exc:
        raise AttestationFailed(f"TDX collateral from {where} is malformed: {exc}", code="collateral_malformed") from exc


def _pck_chain(parsed: Any) -> list[x509.Certificate]:
    pem = parsed.cert_chain_pem_bytes()  # None unless the certification data is a PCK chain (type 5)
    if pem is None:
        raise AttestationFailed("TDX quote carries no PCK certificate chain (certification data type 5); "
                                "quotes must embed it", code="unsupported_evidence")
    chain = load_certificates(bytes(pem))
    leaf = chain[0]
    try:
        is_ca = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        leaf.extensions.get_extension_for_oid(_SGX_EXTENSION)
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise EvidenceMalformed("TDX quote's PCK chain does not start with a PCK certificate (leaf missing or "
                                "chain reordered)") from exc
    if is_ca:
        raise EvidenceMalformed("TDX quote's PCK chain starts with a CA certificate, not the PCK leaf")
    return chain


def _parse(quote: bytes) -> _Quote:
    try:
        parsed = dcap_qvl.parse_quote(quote)
        if not parsed.is_tdx():
            raise AttestationFailed(f"quote is {parsed.quote_type()}, not TDX", code="unsupported_evidence")
        chain = _pck_chain(parsed)
        fmspc = parsed.fmspc()
        report = parsed.report
        attributes = bytes(report.td_attributes)
        service_td = bytes(getattr(report, "mr_service_td", bytes(48))).hex()
    except ValueError as exc:
        raise EvidenceMalformed(f"TDX quote cannot be parsed: {exc}") from exc
    return _Quote(parsed=parsed, fmspc=fmspc, pck_chain=chain, debug=bool(attributes[0] & _TD_ATTRIBUTES_DEBUG),
                  mr_service_td=service_td)


def _screen(quote: _Quote, screen: TdxScreen) -> None:
    if quote.debug and not screen.allow_debug:
        raise AttestationFailed("TDX quote is from a debug TD (TDATTRIBUTES.DEBUG); the policy forbids debug",
                                code="debug_forbidden")
    if quote.mr_service_td != _NO_SERVICE_TD and quote.mr_service_td not in screen.service_tds:
        raise AttestationFailed(f"TD is bound to service TD {quote.mr_service_td[:16]}… (MRSERVICETD), which the "
                                "policy does not accept", code="service_td_not_allowed")


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def _check_times(quote: _Quote, collateral: Any, now: float) -> None:
    """Refuse, with a named reason, what dcap-qvl would refuse for the clock: PCK certificates, TCB info, QE
    identity and CRLs outside their validity at ``now``."""
    when = _utc(now)
    try:
        windows = [(name, dt.datetime.fromisoformat(body["issueDate"]), dt.datetime.fromisoformat(body["nextUpdate"]))
                   for name, body in (("TCB info", json.loads(collateral.tcb_info)),
                                      ("QE identity", json.loads(collateral.qe_identity)))]
        for name, der in (("PCK CRL", collateral.pck_crl), ("root CA CRL", collateral.root_ca_crl)):
            crl = x509.load_der_x509_crl(bytes(der))
            windows.append((name, crl.last_update_utc, crl.next_update_utc or crl.last_update_utc))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise AttestationFailed(f"TDX collateral is malformed: {exc}", code="collateral_malformed") from exc
    for name, issued, until in windows:
        if not issued <= when <= until:
            raise AttestationFailed(f"TDX collateral {name} is valid {issued:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}, "
                                    f"not at {when:%Y-%m-%d %H:%M}", code="collateral_expired")
    for cert in quote.pck_chain:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise AttestationFailed(f"TDX PCK certificate {cert.subject.rfc4514_string()} is not valid at "
                                    f"{when:%Y-%m-%d}", code="certificate_expired")


async def verify_tdx(quote: bytes, offered: dict[str, Any] | None, source: TdxCollateralSource,
                     now: float, screen: TdxScreen = TdxScreen()) -> PlatformClaims:
    parsed = _parse(quote)
    _screen(parsed, screen)
    collateral = await source.collateral(quote, parsed.fmspc, offered)
    _check_times(parsed, collateral, now)
    try:
        # ~1 ms of Rust; run off the event loop so a burst of verifications never stalls serving
        verified = await asyncio.to_thread(dcap_qvl.verify, quote, collateral, int(now))
    except (ValueError, OverflowError) as exc:
        raise AttestationFailed(f"TDX quote does not verify: {exc}", code="quote_invalid") from exc
    report = parsed.parsed.report
    measurements = {name: bytes(getattr(report, name)).hex() for name in _MEASUREMENTS}
    measurements["mr_service_td"] = parsed.mr_service_td
    return PlatformClaims(
        platform="tdx", simulated=False, measurements=measurements,
        tcb_status=verified.status, advisory_ids=tuple(verified.advisory_ids),
        debug=parsed.debug, report_data=bytes(report.report_data),
    )
