"""The TDX verifier against real public quotes (tests/data/attestation/tdx), including the malformed PCK
certificate data a hostile miner can send with every TD-report signature intact."""

from __future__ import annotations

import json
from pathlib import Path

import dcap_qvl
import pytest

from tests.confidential.quote_surgery import pck_pems, split, with_certification_data
from tests.confidential.samples import PINNED, TDX_QUOTES_ONLY, TDX_VERIFIABLE, tdx
from veilnet.confidential import AttestationFailed, MeasurementPolicy, PlatformRule, TdxCollateralSource
from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.verifiers import TdxScreen, verify_tdx

ZERO_TD = "00" * 48


async def refused(quote: bytes, collateral: dict[str, object] | None, now: float = PINNED,
                  screen: TdxScreen = TdxScreen()) -> AttestationFailed:
    with pytest.raises(AttestationFailed) as failed:
        await verify_tdx(quote, collateral, TdxCollateralSource(), now, screen)
    return failed.value


@pytest.mark.parametrize("name", sorted(TDX_VERIFIABLE))
async def test_real_quotes_verify_up_to_date_with_their_collateral(name: str) -> None:
    sample = tdx(name, TDX_VERIFIABLE[name])
    claims = await verify_tdx(sample.quote, sample.collateral, TdxCollateralSource(), sample.now)
    assert claims.platform == "tdx" and not claims.simulated
    assert claims.tcb_status == "UpToDate" and claims.advisory_ids == ()
    assert claims.debug is False and len(claims.report_data) == 64
    assert set(claims.measurements) == {"mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "mr_config_id",
                                        "mr_service_td"}
    assert claims.measurements["mr_service_td"] == ZERO_TD  # TD 1.0 has none; the TD 1.5 sample is bound to none


async def test_the_dcap_qvl_sample_measurements() -> None:
    sample = tdx()
    claims = await verify_tdx(sample.quote, sample.collateral, TdxCollateralSource(), PINNED)
    assert claims.measurements["mr_td"].startswith("91eb2b44d141d4ec")


async def test_a_flipped_report_data_byte_is_refused_by_dcap_qvl() -> None:
    sample = tdx()
    tampered = bytearray(sample.quote)
    tampered[48 + 520 + 5] ^= 1  # inside the TD report's report_data
    failure = await refused(bytes(tampered), sample.collateral)
    assert failure.code == "quote_invalid" and "signature is invalid" in failure.message


@pytest.mark.parametrize("offset", [10 * 365 * 86400, -300 * 86400], ids=["ten-years-later", "before-issue"])
async def test_a_clock_outside_the_collaterals_validity_is_collateral_expired(offset: int) -> None:
    sample = tdx()
    failure = await refused(sample.quote, sample.collateral, PINNED + offset)
    assert failure.code == "collateral_expired" and "TCB info is valid 2025-06-19" in failure.message


async def test_an_outdated_tcb_has_no_matching_level() -> None:
    sample = tdx("dcapqvl_tdx_quote_outdated")
    failure = await refused(sample.quote, sample.collateral, 1771412331 + 3600)  # an hour after its TCB info
    assert failure.code == "quote_invalid" and "No matching TCB level" in failure.message


async def test_collateral_from_a_directory_by_fmspc(tmp_path: Path) -> None:
    sample = tdx()
    (tmp_path / "B0C06F000000.json").write_text(json.dumps(sample.collateral))
    claims = await verify_tdx(sample.quote, None, TdxCollateralSource(directory=tmp_path), PINNED)
    assert claims.tcb_status == "UpToDate"
    failure = await refused(sample.quote, None)
    assert failure.code == "collateral_missing" and "FMSPC B0C06F000000" in failure.message


async def test_collateral_that_is_not_dcap_qvls_format_is_collateral_malformed() -> None:
    sample = tdx()
    assert (await refused(sample.quote, {"tcb_info": 7})).code == "collateral_malformed"
    assert sample.collateral is not None
    broken = dict(sample.collateral, tcb_info="{not json")
    assert (await refused(sample.quote, broken)).code in ("collateral_malformed", "quote_invalid")


@pytest.mark.parametrize("name", [n for n in TDX_QUOTES_ONLY if n not in ("trustee_tdx_quote_4.dat",
                                                                           "automata_alibaba_quote_5.dat")])
async def test_production_quotes_parse_and_fail_closed_without_collateral(name: str) -> None:
    failure = await refused(tdx(name).quote, None)
    assert failure.code == "collateral_missing" and "no TDX collateral for FMSPC" in failure.message


async def test_a_real_debug_td_is_refused_as_debug_unless_the_policy_allows_debug() -> None:
    quote = tdx("trustee_tdx_quote_4.dat").quote  # TDATTRIBUTES.DEBUG set
    assert (await refused(quote, None)).code == "debug_forbidden"
    # a policy allowing debug lets it through the screen; here it then lacks collateral
    assert (await refused(quote, None, screen=TdxScreen(allow_debug=True))).code == "collateral_missing"


async def test_a_td_bound_to_a_service_td_is_for_the_policy_to_accept() -> None:
    sample = tdx("automata_alibaba_quote_5.dat")  # a real Alibaba Cloud TD 1.5, bound to a service TD
    failure = await refused(sample.quote, sample.collateral, 1750500000)
    assert failure.code == "service_td_not_allowed" and "383c87d3bbb047b2" in failure.message
    full = bytes(dcap_qvl.parse_quote(sample.quote).report.mr_service_td).hex()
    assert full.startswith("383c87d3bbb047b2")
    policy = MeasurementPolicy(platforms={"tdx": PlatformRule(mr_service_td=[full.upper()])})
    assert policy.service_tds() == {full}
    # accepted by the policy, it reaches dcap-qvl, whose Python binding (0.7) refuses every service-TD-bound TD
    failure = await refused(sample.quote, sample.collateral, 1750500000, TdxScreen(service_tds=policy.service_tds()))
    assert failure.code == "quote_invalid" and "Invalid MR service TD" in failure.message


def test_the_policy_checks_mr_service_td_on_verified_claims() -> None:
    claims = PlatformClaims(platform="tdx", simulated=False, measurements={"mr_td": "aa", "mr_service_td": "bb" * 48},
                            tcb_status="UpToDate", debug=False, report_data=bytes(64))
    rule = PlatformRule(measurements=[{"mr_td": "aa"}])
    with pytest.raises(AttestationFailed) as failed:
        MeasurementPolicy(platforms={"tdx": rule}).check_platform(claims, gpu_attested=False)
    assert failed.value.code == "service_td_not_allowed"
    accepting = PlatformRule(measurements=[{"mr_td": "aa"}], mr_service_td=["BB" * 48])
    MeasurementPolicy(platforms={"tdx": accepting}).check_platform(claims, gpu_attested=False)


def _pck_variants() -> dict[str, tuple[int, bytes, str]]:
    pems = pck_pems(tdx().quote)
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    return {  # name -> (certification data type, data, expected reason)
        "leaf-removed": (5, b"".join(pems[1:]), "evidence_malformed"),
        "chain-empty": (5, b"", "evidence_malformed"),
        "chain-reordered": (5, b"".join(reversed(pems)), "evidence_malformed"),
        "root-first": (5, pems[2] + pems[0] + pems[1], "evidence_malformed"),
        "garbage-pem": (5, garbage, "evidence_malformed"),
        "binary-garbage": (5, bytes(range(256)) * 4, "evidence_malformed"),
        "type-3-encrypted-ppid": (3, bytes(384) + b"\x00\x01" * 3, "unsupported_evidence"),
        "type-1": (1, bytes(64), "unsupported_evidence"),
        "type-7": (7, b"", "unsupported_evidence"),
        "leaf-only": (5, pems[0], "quote_invalid"),  # dcap-qvl itself refuses a chain that stops at the leaf
        "foreign-leaf-first": (5, pems[1] + pems[0] + pems[2], "evidence_malformed"),
    }


@pytest.mark.parametrize("variant", sorted(_pck_variants()))
async def test_malformed_pck_certification_data_is_refused_with_a_named_reason(variant: str) -> None:
    cert_type, data, expected = _pck_variants()[variant]
    sample = tdx()
    quote = with_certification_data(sample.quote, cert_type, data)
    assert split(quote)[2] == cert_type
    failure = await refused(quote, sample.collateral)
    assert failure.code == expected, failure.message


async def test_a_quote_cut_inside_its_certification_data_is_malformed() -> None:
    sample = tdx()
    for length in (40, 700, 1500, 4000, len(sample.quote) - 80):
        failure = await refused(sample.quote[:length], sample.collateral)
        assert failure.code == "evidence_malformed", (length, failure.message)
