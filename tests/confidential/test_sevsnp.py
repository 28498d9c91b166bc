"""The SEV-SNP verifier against real public reports chained to AMD's real roots (tests/data/attestation/sev-snp),
and against test-signed reports in the same format for the checks behind the signature (Turin's TCB layout
and 8-byte hwID, TCB against the VCEK, chip id, signing key kind)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.confidential.forge import Issued, der_int, issue, set_u32, sign_snp_report, vendor_extensions
from tests.confidential.samples import PINNED, SEV_DIR, SEV_SAMPLES, sev
from veilnet.confidential import AttestationFailed, MeasurementPolicy, PlatformRule
from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.verifiers import load_certificates, verify_sev_snp

EXPECTED = {  # sample -> (TCB status, reported TCB, VMPL, debug)
    "gosev": ("UpToDate", {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 0x44}, 0, True),
    "virtee": ("UpToDate", {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 0x73}, 0, False),
    "trustee": ("OutOfDate", {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 0x73}, 0, False),
    "trustee_vlek": ("OutOfDate", {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 0xD9}, 1, False),
}


def refusal(report: bytes, chain: bytes, roots: list[object], now: float = PINNED) -> AttestationFailed:
    with pytest.raises(AttestationFailed) as failed:
        verify_sev_snp(report, chain, roots, now)  # type: ignore[arg-type]
    return failed.value


@pytest.mark.parametrize("name", SEV_SAMPLES)
def test_real_reports_verify_to_amds_root_with_their_tcb_status(name: str) -> None:
    sample = sev(name)
    status, tcb, vmpl, debug = EXPECTED[name]
    claims = verify_sev_snp(sample.report, sample.chain, sample.roots, sample.now)
    assert (claims.tcb_status, claims.tcb, claims.vmpl, claims.debug) == (status, tcb, vmpl, debug)
    assert claims.platform == "sev-snp" and len(claims.report_data) == 64
    assert set(claims.measurements) == {"measurement", "host_data", "id_key_digest", "author_key_digest"}


def test_the_go_sev_guest_sample_under_policies() -> None:
    sample = sev("gosev")
    claims = verify_sev_snp(sample.report, sample.chain, sample.roots, PINNED)
    assert claims.report_data[:5] == bytes([1, 2, 3, 4, 5])
    rule = PlatformRule(measurements=[{"measurement": claims.measurements["measurement"]}], min_tcb={"snp": 6})
    with pytest.raises(AttestationFailed, match="debug-enabled TEE") as refused:
        MeasurementPolicy(platforms={"sev-snp": rule}).check_platform(claims, gpu_attested=False)
    assert refused.value.code == "debug_forbidden"
    with pytest.raises(AttestationFailed, match="snp=5 is below the minimum 6"):
        MeasurementPolicy(platforms={"sev-snp": rule}, allow_debug=True).check_platform(claims, gpu_attested=False)
    lenient = PlatformRule(measurements=rule.measurements)
    MeasurementPolicy(platforms={"sev-snp": lenient}, allow_debug=True).check_platform(claims, gpu_attested=False)


def test_a_report_from_vmpl_1_is_refused_unless_the_policy_accepts_that_vmpl() -> None:
    sample = sev("trustee_vlek")
    claims = verify_sev_snp(sample.report, sample.chain, sample.roots, PINNED)
    measurement = {"measurement": claims.measurements["measurement"]}
    strict = PlatformRule(measurements=[measurement], tcb_status=["UpToDate", "OutOfDate"])
    with pytest.raises(AttestationFailed, match="requested at VMPL 1") as refused:
        MeasurementPolicy(platforms={"sev-snp": strict}).check_platform(claims, gpu_attested=False)
    assert refused.value.code == "vmpl_not_allowed"
    relaxed = strict.model_copy(update={"vmpl": [0, 1]})
    MeasurementPolicy(platforms={"sev-snp": relaxed}).check_platform(claims, gpu_attested=False)


def test_an_out_of_date_tcb_is_refused_by_the_default_policy() -> None:
    sample = sev("trustee")
    claims = verify_sev_snp(sample.report, sample.chain, sample.roots, PINNED)
    rule = PlatformRule(measurements=[{"measurement": claims.measurements["measurement"]}])
    with pytest.raises(AttestationFailed, match="TCB status OutOfDate is not accepted") as refused:
        MeasurementPolicy(platforms={"sev-snp": rule}).check_platform(claims, gpu_attested=False)
    assert refused.value.code == "tcb_outdated"


def test_tampering_or_an_unpinned_or_foreign_root_is_refused() -> None:
    sample = sev("virtee")
    tampered = bytearray(sample.report)
    tampered[0x90] ^= 0xFF  # the launch measurement
    assert refusal(bytes(tampered), sample.chain, sample.roots).code == "signature_invalid"
    assert refusal(sample.report, sample.chain, []).code == "no_trust_anchor"
    turin_ark = load_certificates((SEV_DIR / "gosev_ask_ark_turin_vcek.pem").read_bytes())[-1:]
    assert refusal(sample.report, sample.chain, turin_ark).code in ("untrusted_root", "certificate_invalid")


@pytest.mark.parametrize(("other", "reason"), [
    ("virtee_vcek_milan.der", "signature_invalid"),  # AMD's VCEK of another Milan chip: its key did not sign
    ("trustee_test-vcek-invalid-legacy.der", "certificate_invalid"),  # VCEK-shaped, not signed by AMD's ASK
    ("trustee_test-vcek-invalid-new.der", "certificate_invalid"),
])
def test_a_swapped_vcek_is_refused(other: str, reason: str) -> None:
    sample = sev("trustee")
    vcek = load_certificates((SEV_DIR / other).read_bytes())[0]
    chain = vcek.public_bytes(Encoding.PEM) + sample.chain.split(b"-----END CERTIFICATE-----\n", 1)[1]
    assert refusal(sample.report, chain, sample.roots).code == reason


def test_the_vlek_outside_its_validity_is_certificate_expired() -> None:
    sample = sev("trustee_vlek")  # the VLEK is valid until 2025-12-10
    later = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    failure = refusal(sample.report, sample.chain, sample.roots, later)
    assert failure.code == "certificate_expired" and "SEV-VLEK" in failure.message


def test_truncated_or_padded_reports_are_malformed() -> None:
    sample = sev("virtee")
    for report in (sample.report[:0x2A0], sample.report[:-1], sample.report + b"\x00", b""):
        assert refusal(report, sample.chain, sample.roots).code == "evidence_malformed"


# --- test-signed reports: the same bytes and extensions, a test root instead of AMD's ---------------------------

def _forged_chain(template: str, **replace: bytes) -> tuple[Issued, Issued, bytes]:
    """(root, VCEK, chain PEM) with the template VCEK's AMD extensions (some replaced) under a test ARK/ASK."""
    real = load_certificates((SEV_DIR / template).read_bytes())[0]
    ark = issue("ARK-Test")
    ask = issue("SEV-Test", ark)
    vcek = issue("SEV-VCEK", ask, ca=False, extensions=vendor_extensions(real, **replace))
    return ark, vcek, vcek.pem + ask.pem


def _turin_report(hwid: bytes, tcb: bytes, *, current: bytes | None = None) -> bytearray:
    report = bytearray(sev("virtee").report)
    set_u32(report, 0, 3)  # version 3: CPUID fields present
    report[0x188:0x18B] = bytes([0x1A, 0x02, 0x00])  # family 0x1A, model 2: Turin
    report[0x180:0x188] = tcb
    report[0x38:0x40] = current or tcb
    report[0x1A0:0x1E0] = hwid + bytes(56)
    return report


TURIN_TCB = bytes([1, 2, 3, 4, 0, 0, 0, 9])  # fmc 1, bootloader 2, tee 3, snp 4, microcode 9 (Turin layout)
TURIN_EXTENSIONS = {"fmc": der_int(1), "bootloader": der_int(2), "tee": der_int(3), "snp": der_int(4),
                    "microcode": der_int(9)}


def test_a_turin_report_verifies_with_its_8_byte_hwid_and_turin_tcb_layout() -> None:
    real = load_certificates((SEV_DIR / "virtee_vcek_turin.der").read_bytes())[0]
    hwid = bytes.fromhex("1e550a8ee5cf9f4d")  # the real Turin VCEK's hwID: 8 bytes, raw
    ark, vcek, chain = _forged_chain("virtee_vcek_turin.der", **TURIN_EXTENSIONS)
    assert real.extensions  # the template is AMD's Turin VCEK: product "Turin", hwID and FMC SPL extensions
    claims = verify_sev_snp(sign_snp_report(_turin_report(hwid, TURIN_TCB), vcek.key), chain, [ark.cert], PINNED)
    assert claims.tcb == {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 9}
    assert claims.tcb_status == "UpToDate"
    assert MeasurementPolicy(platforms={"sev-snp": PlatformRule(min_tcb={"fmc": 2})}).platforms  # fmc is a component


def test_turin_chip_id_tcb_and_cpu_must_match_the_vcek() -> None:
    hwid = bytes.fromhex("1e550a8ee5cf9f4d")
    ark, vcek, chain = _forged_chain("virtee_vcek_turin.der", **TURIN_EXTENSIONS)

    def code(report: bytearray) -> str:
        return refusal(sign_snp_report(report, vcek.key), chain, [ark.cert]).code

    assert code(_turin_report(bytes(8), TURIN_TCB)) == "chip_id_mismatch"
    wrong_fmc = bytearray(TURIN_TCB)
    wrong_fmc[0] = 2
    assert code(_turin_report(hwid, bytes(wrong_fmc))) == "tcb_mismatch"
    milan_cpu = _turin_report(hwid, TURIN_TCB)
    milan_cpu[0x188:0x18B] = bytes([0x19, 0x01, 0x01])
    assert code(milan_cpu) == "chip_id_mismatch"  # the VCEK is a Turin one


def test_reported_tcb_against_the_vcek_and_the_running_firmware() -> None:
    hwid = bytes.fromhex("1e550a8ee5cf9f4d")
    ark, vcek, chain = _forged_chain("virtee_vcek_turin.der", **TURIN_EXTENSIONS)
    newer = bytes([1, 2, 3, 5, 0, 0, 0, 9])  # the firmware runs SNP SPL 5, the report is signed at 4
    report = sign_snp_report(_turin_report(hwid, TURIN_TCB, current=newer), vcek.key)
    assert verify_sev_snp(report, chain, [ark.cert], PINNED).tcb_status == "OutOfDate"
    older = bytes([1, 2, 3, 3, 0, 0, 0, 9])  # a reported TCB above the one running: no firmware does that
    report = sign_snp_report(_turin_report(hwid, TURIN_TCB, current=older), vcek.key)
    assert refusal(report, chain, [ark.cert]).code == "tcb_mismatch"


def test_a_milan_vcek_certifying_another_tcb_or_chip_is_refused() -> None:
    sample = sev("virtee")
    ark, vcek, chain = _forged_chain("virtee_vcek_milan.der", microcode=der_int(0x74))
    assert refusal(sign_snp_report(sample.report, vcek.key), chain, [ark.cert]).code == "tcb_mismatch"
    ark, vcek, chain = _forged_chain("virtee_vcek_milan.der", hwid=bytes(64))
    assert refusal(sign_snp_report(sample.report, vcek.key), chain, [ark.cert]).code == "chip_id_mismatch"
    ark, vcek, chain = _forged_chain("virtee_vcek_milan.der", hwid=b"\x04\x40" + sample.report[0x1A0:0x1E0])
    assert verify_sev_snp(sign_snp_report(sample.report, vcek.key), chain, [ark.cert], PINNED).tcb_status == "UpToDate"


def test_the_signing_key_kind_must_match_the_certificate() -> None:
    sample = sev("virtee")
    ark, vcek, chain = _forged_chain("virtee_vcek_milan.der")
    vlek_signed = bytearray(sample.report)
    set_u32(vlek_signed, 0x48, 1 << 2)  # key info: signed by a VLEK
    assert refusal(sign_snp_report(vlek_signed, vcek.key), chain, [ark.cert]).code == "certificate_invalid"
    no_key = bytearray(sample.report)
    set_u32(no_key, 0x48, 7 << 2)
    assert refusal(sign_snp_report(no_key, vcek.key), chain, [ark.cert]).code == "unsupported_evidence"
    other_algorithm = bytearray(sample.report)
    set_u32(other_algorithm, 0x34, 2)
    assert refusal(sign_snp_report(other_algorithm, vcek.key), chain, [ark.cert]).code == "unsupported_evidence"


def test_debug_policy_bit_of_a_signed_report_reaches_the_policy() -> None:
    sample = sev("virtee")
    ark, vcek, chain = _forged_chain("virtee_vcek_milan.der")
    debug = bytearray(sample.report)
    debug[0x08 + 2] |= 0x08  # guest policy bit 19
    claims = verify_sev_snp(sign_snp_report(debug, vcek.key), chain, [ark.cert], PINNED)
    assert claims.debug is True
    policy = MeasurementPolicy(platforms={"sev-snp": PlatformRule(measurements=[{"measurement": "00"}])})
    with pytest.raises(AttestationFailed) as refused:
        policy.check_platform(claims, gpu_attested=False)
    assert refused.value.code == "debug_forbidden"


def test_claims_type_carries_vmpl() -> None:
    assert PlatformClaims(platform="dev", simulated=True, measurements={}, tcb_status="Simulated", debug=False,
                          report_data=b"").vmpl is None
