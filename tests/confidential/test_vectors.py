"""The platform verifiers against real public evidence (../shared/vectors/attestation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veilnet.confidential import AttestationFailed, PlatformRule, TdxCollateralSource
from veilnet.confidential.policy import MeasurementPolicy
from veilnet.confidential.verifiers import load_certificates, verify_nvidia_gpu, verify_sev_snp, verify_tdx

PINNED = 1750331763  # inside the sample collateral's validity (2025-06-19 .. 2025-07-19)


def _tdx(d: Path, name: str = "dcapqvl_tdx_quote") -> tuple[bytes, dict[str, object]]:
    return (d / name).read_bytes(), json.loads((d / f"{name}_collateral.json").read_text())


async def test_tdx_quote_verifies_up_to_date_at_the_pinned_time(attestation_dir: Path) -> None:
    quote, collateral = _tdx(attestation_dir)
    claims = await verify_tdx(quote, collateral, TdxCollateralSource(), PINNED)
    assert claims.platform == "tdx" and not claims.simulated
    assert claims.tcb_status == "UpToDate" and claims.advisory_ids == ()
    assert claims.debug is False
    assert claims.measurements["mr_td"].startswith("91eb2b44d141d4ec")
    assert len(claims.report_data) == 64


async def test_tdx_flipped_report_data_byte_is_an_invalid_signature(attestation_dir: Path) -> None:
    quote, collateral = _tdx(attestation_dir)
    tampered = bytearray(quote)
    tampered[48 + 520 + 5] ^= 1  # inside the TD report's report_data
    with pytest.raises(AttestationFailed, match="signature is invalid"):
        await verify_tdx(bytes(tampered), collateral, TdxCollateralSource(), PINNED)


async def test_tdx_ten_years_later_the_collateral_has_expired(attestation_dir: Path) -> None:
    quote, collateral = _tdx(attestation_dir)
    with pytest.raises(AttestationFailed, match="Expired"):
        await verify_tdx(quote, collateral, TdxCollateralSource(), PINNED + 10 * 365 * 86400)


async def test_tdx_outdated_tcb_has_no_matching_level(attestation_dir: Path) -> None:
    quote, collateral = _tdx(attestation_dir, "dcapqvl_tdx_quote_outdated")
    issued = 1771412331 + 3600  # an hour after this collateral's TCB info was issued (2026-02-18)
    with pytest.raises(AttestationFailed, match="No matching TCB level"):
        await verify_tdx(quote, collateral, TdxCollateralSource(), issued)


async def test_tdx_collateral_from_a_directory_by_fmspc(attestation_dir: Path, tmp_path: Path) -> None:
    quote, collateral = _tdx(attestation_dir)
    (tmp_path / "B0C06F000000.json").write_text(json.dumps(collateral))
    claims = await verify_tdx(quote, None, TdxCollateralSource(directory=tmp_path), PINNED)
    assert claims.tcb_status == "UpToDate"
    with pytest.raises(AttestationFailed, match="no TDX collateral for FMSPC B0C06F000000"):
        await verify_tdx(quote, None, TdxCollateralSource(), PINNED)


@pytest.mark.parametrize("name", ["gotdx_tdx_prod_quote_SPR_E4.dat", "gotdx_quote_v5_sample.dat",
                                  "gotdx_cos113_quote.dat"])
async def test_production_tdx_quotes_parse_and_fail_closed_without_collateral(attestation_dir: Path, name: str) -> None:
    with pytest.raises(AttestationFailed, match="no TDX collateral for FMSPC"):
        await verify_tdx((attestation_dir / name).read_bytes(), None, TdxCollateralSource(), PINNED)


def _sev(d: Path) -> tuple[bytes, bytes]:
    return (d / "gosev_attestation.bin").read_bytes(), (d / "gosev_vcek.testcer").read_bytes()


def test_sev_snp_report_verifies_with_its_vcek(attestation_dir: Path) -> None:
    report, vcek = _sev(attestation_dir)
    claims = verify_sev_snp(report, vcek, load_certificates(vcek), PINNED)
    assert claims.platform == "sev-snp"
    assert claims.report_data[:5] == bytes([1, 2, 3, 4, 5])
    assert claims.tcb == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 0x44}
    assert len(claims.measurements["measurement"]) == 96
    assert claims.debug is True  # the sample guest policy (0xB0000) sets bit 19: debugging allowed
    rule = PlatformRule(measurements=[{"measurement": claims.measurements["measurement"]}], min_tcb={"snp": 6})
    with pytest.raises(AttestationFailed, match="debug-enabled TEE") as refused:
        MeasurementPolicy(platforms={"sev-snp": rule}).check_platform(claims, gpu_attested=False)
    assert refused.value.code == "debug_forbidden"
    with pytest.raises(AttestationFailed, match="snp=5 is below the minimum 6"):
        MeasurementPolicy(platforms={"sev-snp": rule}, allow_debug=True).check_platform(claims, gpu_attested=False)
    lenient = PlatformRule(measurements=rule.measurements)
    MeasurementPolicy(platforms={"sev-snp": lenient}, allow_debug=True).check_platform(claims, gpu_attested=False)


def test_sev_snp_tampered_report_and_unpinned_vcek_are_refused(attestation_dir: Path) -> None:
    report, vcek = _sev(attestation_dir)
    tampered = bytearray(report)
    tampered[0x90] ^= 0xFF  # the launch measurement
    with pytest.raises(AttestationFailed, match="signature does not verify"):
        verify_sev_snp(bytes(tampered), vcek, load_certificates(vcek), PINNED)
    with pytest.raises(AttestationFailed, match="no trusted root certificate is pinned"):
        verify_sev_snp(report, vcek, (), PINNED)


def _gpu(d: Path) -> tuple[bytes, bytes]:
    return bytes.fromhex((d / "gonvtrust_attestationReport.hex").read_text().strip()), \
        (d / "gonvtrust_gpuAkCertChain.pem").read_bytes()


def test_nvidia_report_verifies_against_the_pinned_nvidia_root(attestation_dir: Path) -> None:
    report, chain = _gpu(attestation_dir)
    root = load_certificates(chain)[-1:]  # NVIDIA Device Identity CA, self-signed
    verify_nvidia_gpu(report, chain, report[4:36], root, PINNED)


def test_nvidia_evidence_for_an_unrelated_nonce_is_refused(attestation_dir: Path) -> None:
    report, chain = _gpu(attestation_dir)
    root = load_certificates(chain)[-1:]
    with pytest.raises(AttestationFailed, match="answers another nonce"):
        verify_nvidia_gpu(report, chain, bytes(32), root, PINNED)


def test_nvidia_tampered_report_or_foreign_root_is_refused(attestation_dir: Path) -> None:
    report, chain = _gpu(attestation_dir)
    certs = load_certificates(chain)
    tampered = bytearray(report)
    tampered[100] ^= 1
    with pytest.raises(AttestationFailed, match="signature does not verify"):
        verify_nvidia_gpu(bytes(tampered), chain, report[4:36], certs[-1:], PINNED)
    _, vcek = _sev(attestation_dir)
    with pytest.raises(AttestationFailed, match="does not end at a pinned root"):
        verify_nvidia_gpu(report, chain, report[4:36], load_certificates(vcek), PINNED)
