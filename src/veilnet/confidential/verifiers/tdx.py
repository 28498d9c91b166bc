"""Intel TDX quotes, verified by dcap-qvl against Intel's root CA with PCK/TCB/QE collateral.

Collateral is Intel-signed, so it may come from the evidence itself, from files (``<fmspc>.json`` in a
directory, as dcap-qvl serialises it) or from a PCCS; dcap-qvl checks its signatures, CRLs and validity
at the verifier's clock.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dcap_qvl

from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.errors import AttestationFailed

__all__ = ["TdxCollateralSource", "verify_tdx"]

_TD_ATTRIBUTES_DEBUG = 0x01  # TDATTRIBUTES bit 0 (TUD.DEBUG)


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
                return await asyncio.wait_for(dcap_qvl.get_collateral(self.pccs_url, quote), self.pccs_timeout)
            except TimeoutError as exc:
                raise AttestationFailed(f"the PCCS at {self.pccs_url} did not answer within {self.pccs_timeout:g} s "
                                        "(TDX collateral)") from exc
            except (ValueError, RuntimeError) as exc:
                raise AttestationFailed(f"TDX collateral could not be fetched from {self.pccs_url}: {exc}") from exc
        raise AttestationFailed(f"no TDX collateral for FMSPC {fmspc}: the evidence carries none and no "
                                "collateral directory or PCCS URL is configured", code="collateral_missing")


def _parse_collateral(text: str, where: str) -> Any:
    try:
        return dcap_qvl.QuoteCollateralV3.from_json(text)
    except ValueError as exc:
        raise AttestationFailed(f"TDX collateral from {where} is malformed: {exc}") from exc


async def verify_tdx(quote: bytes, offered: dict[str, Any] | None, source: TdxCollateralSource,
                     now: float) -> PlatformClaims:
    try:
        parsed = dcap_qvl.parse_quote(quote)
    except ValueError as exc:
        raise AttestationFailed(f"TDX quote cannot be parsed: {exc}") from exc
    if not parsed.is_tdx():
        raise AttestationFailed(f"quote is {parsed.quote_type()}, not TDX")
    collateral = await source.collateral(quote, parsed.fmspc(), offered)
    try:
        # ~1 ms of Rust; run off the event loop so a burst of verifications never stalls serving
        verified = await asyncio.to_thread(dcap_qvl.verify, quote, collateral, int(now))
    except ValueError as exc:
        raise AttestationFailed(f"TDX quote does not verify: {exc}", code="quote_invalid") from exc
    report = parsed.report
    return PlatformClaims(
        platform="tdx", simulated=False,
        measurements={name: getattr(report, name).hex()
                      for name in ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "mr_config_id")},
        tcb_status=verified.status, advisory_ids=tuple(verified.advisory_ids),
        debug=bool(report.td_attributes[0] & _TD_ATTRIBUTES_DEBUG), report_data=bytes(report.report_data),
    )
