"""NVIDIA GPU evidence from NVML (``nvidia-ml-py``), for miners whose GPUs run in confidential-computing mode.

For each GPU, NVML asks the GPU for an SPDM measurement report answering the verifier's 32-byte nonce
(``nvmlDeviceGetConfComputeGpuAttestationReport``) and returns the certificate chain of the GPU's attestation
key (``nvmlDeviceGetConfComputeGpuCertificate``). Verifiers check both against pinned NVIDIA roots
(``verifiers/nvidia.py``). NVML calls block, so :class:`NvmlGpuEvidence` is called from a worker thread.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from veilnet.confidential.errors import AttestationFailed
from veilnet.protocol.confidential import GpuEvidence

__all__ = ["NvmlGpuEvidence", "gpu_evidence_from_nvml", "pem_chain"]

NONCE_BYTES = 32


def _der_certificates(raw: bytes) -> list[bytes]:
    """Split concatenated DER certificates (each an ASN.1 SEQUENCE) without parsing them."""
    out: list[bytes] = []
    at = 0
    while at < len(raw):
        if raw[at] == 0 and not any(raw[at:]):  # NVML pads its buffers with zeros
            break
        if raw[at] != 0x30 or at + 2 > len(raw):
            raise AttestationFailed("GPU certificate chain is neither PEM nor DER certificates")
        first = raw[at + 1]
        if first < 0x80:
            header, length = 2, first
        else:
            count = first & 0x7F
            header, length = 2 + count, int.from_bytes(raw[at + 2:at + 2 + count], "big")
        end = at + header + length
        if end > len(raw):
            raise AttestationFailed("GPU certificate chain ends inside a certificate")
        out.append(raw[at:end])
        at = end
    return out


def pem_chain(raw: bytes) -> str:
    """NVML's attestation-key chain as PEM text (it may come as PEM or as concatenated DER)."""
    if b"-----BEGIN CERTIFICATE-----" in raw:
        return raw.rstrip(b"\x00").decode("ascii")
    blocks = []
    for der in _der_certificates(raw):
        body = base64.encodebytes(der).decode("ascii")
        blocks.append(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    if not blocks:
        raise AttestationFailed("the GPU returned no attestation certificate chain")
    return "".join(blocks)


def gpu_evidence_from_nvml(report: Any, certificate: Any) -> GpuEvidence:
    """One GPU's evidence from NVML's ``c_nvmlConfComputeGpuAttestationReport_t`` and
    ``c_nvmlConfComputeGpuCertificate_t``."""
    size = int(report.attestationReportSize)
    if size == 0 or size > len(report.attestationReport):
        raise AttestationFailed(f"the GPU returned an attestation report of {size} bytes")
    chain_size = int(certificate.attestationCertChainSize)
    if chain_size > len(certificate.attestationCertChain):
        raise AttestationFailed(f"the GPU returned a certificate chain of {chain_size} bytes")
    return GpuEvidence(report=bytes(report.attestationReport[:size]),
                       certificate_chain=pem_chain(bytes(certificate.attestationCertChain[:chain_size])))


@dataclass
class NvmlGpuEvidence:
    """Evidence from every GPU NVML sees; fails closed when NVML, the driver or confidential mode is missing."""

    def collect(self, nonce: bytes) -> list[GpuEvidence]:
        if len(nonce) != NONCE_BYTES:
            raise AttestationFailed(f"GPU nonces are {NONCE_BYTES} bytes, got {len(nonce)}")
        import pynvml

        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise AttestationFailed(f"NVML is unavailable (no NVIDIA driver?): {exc}") from exc
        try:
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                raise AttestationFailed("NVML sees no GPU to attest")
            evidence = []
            for index in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                report = pynvml.nvmlDeviceGetConfComputeGpuAttestationReport(handle, nonce)
                certificate = pynvml.nvmlDeviceGetConfComputeGpuCertificate(handle)
                evidence.append(gpu_evidence_from_nvml(report, certificate))
            return evidence
        except pynvml.NVMLError as exc:
            raise AttestationFailed(f"GPU attestation through NVML failed (is confidential-computing mode "
                                    f"on?): {exc}") from exc
        finally:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass
