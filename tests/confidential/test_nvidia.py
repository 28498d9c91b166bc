"""The NVIDIA verifier against real public H100 reports (tests/data/attestation/nvidia) chained to NVIDIA's real
Device Identity CA, and against test-signed reports in the same SPDM format: an NVSwitch's identity, GPU
measurements the policy does not accept, and the verifier's whole path with a dev enclave."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.confidential.conftest import MODEL, dev_policy
from tests.confidential.forge import gpu_chain, sign_gpu_report
from tests.confidential.samples import GPU_SAMPLES, NVIDIA_DIR, PINNED, SEV_DIR, gpu, nvidia_root
from veilnet.confidential import (
    AttestationFailed,
    Enclave,
    EvidenceVerifier,
    GpuRule,
    TrustAnchors,
    load_policy,
)
from veilnet.confidential.keyset import gpu_nonce_for
from veilnet.confidential.verifiers import load_certificates, verify_nvidia_gpu
from veilnet.confidential.verifiers.spdm import parse_measurements
from veilnet.errors import ConfigError
from veilnet.protocol.confidential import GpuEvidence

EXPECTED = {  # sample -> (driver, VBIOS)
    "gonvtrust": ("545.00", "96.00.5E.00.01"),
    "nvtrust": ("550.90.07", "96.00.9F.00.01"),
    "trustee": ("580.95.05", "96.00.74.00.1A"),
}


def refusal(report: bytes, chain: bytes, nonce: bytes, roots: list[object] | None = None,
            chips: tuple[str, ...] = ("GH100", "GB100")) -> AttestationFailed:
    with pytest.raises(AttestationFailed) as failed:
        verify_nvidia_gpu(report, chain, nonce, roots if roots is not None else nvidia_root(), PINNED,  # type: ignore[arg-type]
                          chips)
    return failed.value


@pytest.mark.parametrize("name", sorted(GPU_SAMPLES))
def test_real_h100_reports_verify_to_nvidias_root(name: str) -> None:
    sample = gpu(name)
    claims = verify_nvidia_gpu(sample.report, sample.chain, sample.nonce, nvidia_root(), PINNED)
    assert (claims.hwmodel, claims.chip) == ("GH100 A01 GSP BROM", "GH100")
    assert (claims.driver_version, claims.vbios_version) == EXPECTED[name]
    assert len(claims.measurements) == 64 and all(len(v) == 96 for v in claims.measurements.values())


def test_the_signature_is_found_from_the_spdm_lengths_not_the_end_of_the_buffer() -> None:
    sample = gpu("trustee")  # a real report with one byte after its SPDM message
    assert parse_measurements(sample.report, 96).trailing == 1
    verify_nvidia_gpu(sample.report, sample.chain, sample.nonce, nvidia_root(), PINNED)
    padded = gpu("gonvtrust")
    verify_nvidia_gpu(padded.report + bytes(64), padded.chain, padded.nonce, nvidia_root(), PINNED)


def test_an_unrelated_nonce_is_refused() -> None:
    sample = gpu()
    assert refusal(sample.report, sample.chain, bytes(32)).code == "nonce_mismatch"


@pytest.mark.parametrize("offset", [100, 37 + 8 + 60, 2000, -200], ids=["measurement", "block", "late", "opaque"])
def test_a_flipped_signed_byte_is_an_invalid_signature(offset: int) -> None:
    sample = gpu()
    spdm = parse_measurements(sample.report, 96)
    tampered = bytearray(sample.report)
    tampered[offset % len(spdm.signed)] ^= 0x01
    failure = refusal(bytes(tampered), sample.chain, sample.nonce)
    assert failure.code in ("signature_invalid", "evidence_malformed")


def test_a_foreign_root_or_a_broken_chain_is_refused() -> None:
    sample = gpu()
    amd = load_certificates((SEV_DIR / "gosev_ask_ark_milan.pem").read_bytes())[-1:]
    assert refusal(sample.report, sample.chain, sample.nonce, amd).code == "untrusted_root"
    assert refusal(sample.report, sample.chain, sample.nonce, []).code == "no_trust_anchor"
    other = gpu("nvtrust")  # another H100's attestation key: the chain is NVIDIA's, the key did not sign
    assert refusal(sample.report, other.chain, sample.nonce).code == "signature_invalid"
    certs = sample.chain.split(b"-----END CERTIFICATE-----\n")
    swapped = certs[1] + b"-----END CERTIFICATE-----\n" + certs[0] + b"-----END CERTIFICATE-----\n" + \
        b"-----END CERTIFICATE-----\n".join(certs[2:])
    assert refusal(sample.report, swapped, sample.nonce).code == "certificate_invalid"


@pytest.mark.parametrize("length", [0, 36, 37, 40, 45, 1000, 3600, -96, -1 - 96])
def test_truncated_reports_are_malformed(length: int) -> None:
    sample = gpu()
    assert refusal(sample.report[:length], sample.chain, sample.nonce).code == "evidence_malformed"


def test_an_nvswitch_is_not_a_gpu() -> None:
    sample = gpu()
    root, key, chain = gpu_chain("LS_10 A01 FSP BROM")  # NVSwitch identity, as NVIDIA's verifier names it
    report = sign_gpu_report(sample.report, key.key)
    failure = refusal(report, chain, sample.nonce, [root.cert])
    assert failure.code == "device_not_gpu" and "LS_10 A01 FSP BROM" in failure.message
    root, key, chain = gpu_chain("GB202 A01 GSP BROM")
    report = sign_gpu_report(sample.report, key.key)
    assert refusal(report, chain, sample.nonce, [root.cert]).code == "gpu_model_not_accepted"
    assert verify_nvidia_gpu(report, chain, sample.nonce, [root.cert], PINNED, ("GB202",)).chip == "GB202"


def test_the_policy_can_require_gpu_measurements() -> None:
    sample = gpu()
    claims = verify_nvidia_gpu(sample.report, sample.chain, sample.nonce, nvidia_root(), PINNED)
    golden = {index: claims.measurements[index] for index in ("2", "3", "4")}
    GpuRule(measurements=[golden]).check(claims, "p@1", PINNED)
    GpuRule().check(claims, "p@1", PINNED)  # no measurement sets: not compared
    other = gpu("nvtrust")
    other_claims = verify_nvidia_gpu(other.report, other.chain, other.nonce, nvidia_root(), PINNED)
    with pytest.raises(AttestationFailed, match=r"VBIOS 96\.00\.9F\.00\.01") as refused:
        GpuRule(measurements=[golden]).check(other_claims, "p@1", PINNED)
    assert refused.value.code == "unknown_measurement"


async def _verify_with_gpu(make_enclave: Callable[..., Enclave], dev_key: Ed25519PrivateKey, hwmodel: str,
                           clock: float | None = None, **policy: object) -> AttestationFailed | None:
    root, key, chain = gpu_chain(hwmodel)
    anchors = TrustAnchors(dev_enclave_keys=(dev_key.public_key(),), nvidia_roots=(root.cert,))
    verifier = EvidenceVerifier(dev_policy(**policy), anchors, **({"clock": lambda: clock} if clock else {}))
    nonce = verifier.challenge()
    enclave = make_enclave()
    evidence = await enclave.attest(nonce)
    report = sign_gpu_report(gpu().report, key.key, nonce=gpu_nonce_for(enclave.keyset_digest, nonce))
    evidence = evidence.model_copy(update={"gpu": [GpuEvidence(report=report, certificate_chain=chain.decode())]})
    try:
        claims = await verifier.verify(evidence, nonce, model=MODEL)
    except AttestationFailed as exc:
        return exc
    assert claims.gpu_attested and [g.hwmodel for g in claims.gpus] == [hwmodel]
    return None


async def test_the_verifier_checks_each_gpus_device_and_measurements(
    make_enclave: Callable[..., Enclave], dev_key: Ed25519PrivateKey
) -> None:
    assert await _verify_with_gpu(make_enclave, dev_key, "GH100 A01 GSP BROM", gpu_required=True) is None
    switch = await _verify_with_gpu(make_enclave, dev_key, "LS_10 A01 FSP BROM", gpu_required=True)
    assert switch is not None and switch.code == "device_not_gpu"
    real = verify_nvidia_gpu(gpu().report, gpu().chain, gpu().nonce, nvidia_root(), PINNED)
    accepted = {"gpu": GpuRule(measurements=[{"2": real.measurements["2"]}])}
    assert await _verify_with_gpu(make_enclave, dev_key, "GH100 A01 GSP BROM", **accepted) is None
    refused = await _verify_with_gpu(make_enclave, dev_key, "GH100 A01 GSP BROM",
                                     gpu=GpuRule(measurements=[{"2": "00" * 48}]))
    assert refused is not None and refused.code == "unknown_measurement"


# --- reference values from NVIDIA's signed RIMs ---------------------------------------------------------------

RIM_ROOT = NVIDIA_DIR / "nvtrust_verifier_RIM_root.pem"
VBIOS_TEST_RIM = NVIDIA_DIR / "nvtrust_1010_0200_882_96005E0001_test_no_gpu.swidtag"
VBIOS_PROD_RIM = NVIDIA_DIR / "nvtrust_1010_0200_882_96005E0001_PROD.swidtag"
DRIVER_RIM = NVIDIA_DIR / "nvtrust_Driver_RIM_test_no_gpu.swidtag"


def rim_code(rule: GpuRule, name: str = "gonvtrust", now: float = PINNED) -> str | None:
    sample = gpu(name)
    claims = verify_nvidia_gpu(sample.report, sample.chain, sample.nonce, nvidia_root(), PINNED)
    try:
        rule.check(claims, "p@1", now)
    except AttestationFailed as exc:
        return exc.code
    return None


def test_nvidia_signed_rims_vouch_for_the_gpu_measurements() -> None:
    rule = GpuRule(rims=[VBIOS_TEST_RIM, DRIVER_RIM], rim_roots=[RIM_ROOT])
    assert rim_code(rule) is None  # every active value of both RIMs matches the go-nvtrust report
    assert rim_code(GpuRule(rims=[VBIOS_PROD_RIM, DRIVER_RIM], rim_roots=[RIM_ROOT])) == "unknown_measurement"
    assert rim_code(rule, "nvtrust") == "unknown_measurement"  # VBIOS 96.00.9F.00.01: no RIM for it
    assert rim_code(GpuRule(rims=[VBIOS_TEST_RIM], rim_roots=[RIM_ROOT])) == "unknown_measurement"  # no driver RIM
    assert rim_code(rule, now=PINNED + 86400 * 30) == "certificate_expired"  # the RIM signers expired 2025-06


def test_the_prod_rim_names_the_blocks_that_differ() -> None:
    sample = gpu()
    claims = verify_nvidia_gpu(sample.report, sample.chain, sample.nonce, nvidia_root(), PINNED)
    rule = GpuRule(rims=[VBIOS_PROD_RIM, DRIVER_RIM], rim_roots=[RIM_ROOT])
    with pytest.raises(AttestationFailed, match=r"GPU measurements \[2, 3, 4, 10\] differ from the reference values"):
        rule.check(claims, "p@1", PINNED)


def test_a_tampered_or_foreign_rim_does_not_load(tmp_path: Path) -> None:
    text = VBIOS_TEST_RIM.read_text()
    value = text.split('Hash0="', 3)[2][:96]
    tampered = tmp_path / "tampered.swidtag"
    tampered.write_text(text.replace(value, "ab" * 48, 1))
    with pytest.raises(ConfigError, match=r"RIM tampered\.swidtag does not verify"):
        GpuRule(rims=[tampered], rim_roots=[RIM_ROOT])
    with pytest.raises(ConfigError, match="does not verify"):
        GpuRule(rims=[VBIOS_TEST_RIM], rim_roots=[NVIDIA_DIR / "nvtrust_verifier_device_root.pem"])
    with pytest.raises(ConfigError, match=r"needs gpu\.rim_roots"):
        GpuRule(rims=[VBIOS_TEST_RIM])
    garbage = tmp_path / "garbage.swidtag"
    garbage.write_bytes(b"<not xml")
    with pytest.raises(ConfigError, match="not a signed SWID tag"):
        GpuRule(rims=[garbage], rim_roots=[RIM_ROOT])


def test_a_policy_file_names_rims_relative_to_itself(tmp_path: Path) -> None:
    for source in (VBIOS_TEST_RIM, DRIVER_RIM, RIM_ROOT):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    (tmp_path / "policy.toml").write_text(
        f'id = "gpus"\n[gpu]\nrims = ["{VBIOS_TEST_RIM.name}", "{DRIVER_RIM.name}"]\nrim_roots = ["{RIM_ROOT.name}"]\n')
    policy = load_policy(tmp_path / "policy.toml")
    assert rim_code(policy.gpu) is None


async def test_the_verifier_checks_gpus_against_rims(make_enclave: Callable[..., Enclave],
                                                      dev_key: Ed25519PrivateKey) -> None:
    rims = {"gpu": GpuRule(rims=[VBIOS_TEST_RIM, DRIVER_RIM], rim_roots=[RIM_ROOT])}
    assert await _verify_with_gpu(make_enclave, dev_key, "GH100 A01 GSP BROM", clock=PINNED, **rims) is None
    expired = await _verify_with_gpu(make_enclave, dev_key, "GH100 A01 GSP BROM", clock=PINNED + 86400 * 30, **rims)
    assert expired is not None and expired.code == "certificate_expired"
