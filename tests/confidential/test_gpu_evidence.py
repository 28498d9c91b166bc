"""NVIDIA GPU evidence as NVML hands it over (its own ctypes structures, filled with the real H100 report and
chain from tests/data), turned into evidence the verifier accepts; NVML missing fails closed."""

from __future__ import annotations

import os
from pathlib import Path

import pynvml
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.confidential.samples import gpu, tdx
from veilnet.confidential import AttestationFailed, ConfigfsTsmProvider, NvmlGpuEvidence
from veilnet.confidential.gpu import gpu_evidence_from_nvml, pem_chain
from veilnet.confidential.keyset import gpu_nonce_for
from veilnet.confidential.verifiers import load_certificates, verify_nvidia_gpu
from veilnet.protocol.confidential import GpuEvidence
from veilnet.settings import ConfidentialSettings

PINNED = 1750331763


def nvml_structs(report: bytes, chain: bytes) -> tuple[object, object]:
    attestation = pynvml.c_nvmlConfComputeGpuAttestationReport_t()
    attestation.attestationReportSize = len(report)
    attestation.attestationReport[:len(report)] = list(report)
    certificate = pynvml.c_nvmlConfComputeGpuCertificate_t()
    certificate.attestationCertChainSize = len(chain)
    certificate.attestationCertChain[:len(chain)] = list(chain)
    return attestation, certificate


@pytest.fixture
def h100() -> tuple[bytes, bytes]:
    sample = gpu("gonvtrust")
    return sample.report, sample.chain


def test_nvml_report_and_pem_chain_become_verifiable_evidence(h100: tuple[bytes, bytes]) -> None:
    report, chain = h100
    evidence = gpu_evidence_from_nvml(*nvml_structs(report, chain))
    assert evidence.report == report
    root = load_certificates(chain)[-1:]
    verify_nvidia_gpu(evidence.report, evidence.certificate_chain.encode(), report[4:36], root, PINNED)


def test_a_der_chain_is_turned_into_pem(h100: tuple[bytes, bytes]) -> None:
    report, chain = h100
    certificates = load_certificates(chain)
    der = b"".join(c.public_bytes(Encoding.DER) for c in certificates)
    evidence = gpu_evidence_from_nvml(*nvml_structs(report, der))
    assert [c.public_bytes(Encoding.DER) for c in load_certificates(evidence.certificate_chain.encode())] == \
        [c.public_bytes(Encoding.DER) for c in certificates]
    verify_nvidia_gpu(evidence.report, evidence.certificate_chain.encode(), report[4:36], certificates[-1:], PINNED)


def test_empty_or_broken_nvml_answers_fail_closed(h100: tuple[bytes, bytes]) -> None:
    report, chain = h100
    with pytest.raises(AttestationFailed, match="attestation report of 0 bytes"):
        gpu_evidence_from_nvml(*nvml_structs(b"", chain))
    with pytest.raises(AttestationFailed, match="no attestation certificate chain"):
        gpu_evidence_from_nvml(*nvml_structs(report, b""))
    with pytest.raises(AttestationFailed, match="neither PEM nor DER"):
        pem_chain(b"\x05garbage")
    truncated = load_certificates(chain)[0].public_bytes(Encoding.DER)[:-10]
    with pytest.raises(AttestationFailed, match="ends inside a certificate"):
        pem_chain(truncated)


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="an NVIDIA driver is present: NVML answers here")
def test_without_nvml_gpu_evidence_fails_closed() -> None:
    with pytest.raises(AttestationFailed, match="NVML is unavailable"):
        NvmlGpuEvidence().collect(b"\x00" * 32)
    with pytest.raises(AttestationFailed, match="32 bytes"):
        NvmlGpuEvidence().collect(b"\x00" * 31)


async def test_the_provider_sends_each_gpus_evidence_for_the_derived_nonce(
    h100: tuple[bytes, bytes], tmp_path: Path,
) -> None:
    from tests.confidential.test_configfs import KernelEntry, enclave

    report, chain = h100
    asked: list[bytes] = []

    class OneH100(NvmlGpuEvidence):  # stands in for the GPU this machine lacks; NVML's own structures
        def collect(self, nonce: bytes) -> list[GpuEvidence]:
            asked.append(nonce)
            return [gpu_evidence_from_nvml(*nvml_structs(report, chain))]

    kernel = KernelEntry(tmp_path, "tdx_guest", tdx().quote)
    guest = enclave(ConfigfsTsmProvider("tdx", root=tmp_path, gpus=OneH100()))
    answering = kernel.answer()
    nonce = b"\x07" * 32
    evidence = await guest.attest(nonce)
    answering.join(5)
    assert asked == [gpu_nonce_for(guest.keyset_digest, nonce)]
    assert [g.report for g in evidence.gpu] == [report]


def test_gpu_evidence_setting_needs_a_hardware_enclave(tmp_path: Path) -> None:
    from bittensor_wallet import Keypair

    from veilnet.confidential.config import enclave_from_settings
    from veilnet.errors import ConfigError

    hotkey = Keypair.create_from_uri("//GpuMiner")
    with pytest.raises(ConfigError, match="gpu_evidence needs a hardware enclave"):
        enclave_from_settings(ConfidentialSettings(enclave="dev", gpu_evidence=True), tmp_path, hotkey, {})
    tdx = enclave_from_settings(ConfidentialSettings(enclave="tdx", gpu_evidence=True, weights_sha256={"m": "ab" * 32}),
                                tmp_path, hotkey, {"m": None})
    assert tdx is not None and isinstance(tdx.provider, ConfigfsTsmProvider)
    assert isinstance(tdx.provider.gpus, NvmlGpuEvidence)
