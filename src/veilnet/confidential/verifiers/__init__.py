"""Evidence verification: one entry point over the platform verifiers, the keyset binding and the policy.

Every check fails closed with :class:`~veilnet.confidential.errors.AttestationFailed` and a reason
(:data:`~veilnet.confidential.errors.AttestationReason`):

1. the nonce was issued by this verifier, is fresh and is used once;
2. the platform evidence verifies (TDX via dcap-qvl, SEV-SNP via its VCEK chain, the dev enclave via a
   pinned key);
3. its report_data is SHA-512(domain ‖ keyset digest ‖ nonce), so the keys cannot be swapped;
4. the miner's hotkey signed the keyset (and it is the hotkey the caller meant), so no enclave is borrowed;
5. every GPU report is signed by an NVIDIA-rooted key of a GPU (not an NVSwitch) and answers the nonce
   derived from the same challenge;
6. the measurement policy accepts platform, TCB, VMPL, service TD, debug state, measurements, GPU
   measurements, code and weights digests.

Evidence comes from parties the verifier does not trust, so :meth:`EvidenceVerifier.verify` raises nothing
but AttestationFailed: the verifiers name their reasons, and anything else a verifier raises (a bug) is
logged with its traceback and refused as ``verifier_error``, so no miner can stop a validator or a client.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from veilnet.confidential.claims import GpuClaims, PlatformClaims, VerifiedClaims
from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.keyset import gpu_nonce_for, report_data_for, verify_keyset_signature
from veilnet.confidential.nonces import NonceBook
from veilnet.confidential.policy import MeasurementPolicy
from veilnet.confidential.verifiers.dev import dev_statement, verify_dev
from veilnet.confidential.verifiers.nvidia import verify_nvidia_gpu
from veilnet.confidential.verifiers.sevsnp import verify_sev_snp
from veilnet.confidential.verifiers.tdx import TdxCollateralSource, TdxScreen, verify_tdx
from veilnet.confidential.verifiers.x509chain import load_certificates, verify_chain
from veilnet.protocol.confidential import Evidence

log = logging.getLogger(__name__)
__all__ = [
    "EvidenceVerifier",
    "TdxCollateralSource",
    "TdxScreen",
    "TrustAnchors",
    "dev_statement",
    "load_certificates",
    "verify_chain",
    "verify_dev",
    "verify_nvidia_gpu",
    "verify_sev_snp",
    "verify_tdx",
]


@dataclass(frozen=True)
class TrustAnchors:
    """What a verifier trusts besides Intel's root CA (built into dcap-qvl): pinned keys and root certificates."""

    dev_enclave_keys: tuple[Ed25519PublicKey, ...] = ()
    amd_roots: tuple[x509.Certificate, ...] = ()
    nvidia_roots: tuple[x509.Certificate, ...] = ()
    tdx_collateral: TdxCollateralSource = field(default_factory=TdxCollateralSource)


class EvidenceVerifier:
    """Issues challenge nonces and verifies the evidence that answers them (``clock`` is injectable)."""

    def __init__(self, policy: MeasurementPolicy, anchors: TrustAnchors, *, clock: Callable[[], float] = time.time,
                 nonce_ttl: float = 60.0) -> None:
        self.policy = policy
        self.anchors = anchors
        self.clock = clock
        self.nonces = NonceBook(ttl=nonce_ttl, clock=clock)

    def challenge(self) -> bytes:
        return self.nonces.issue()

    async def verify(self, evidence: Evidence, nonce: bytes, *, hotkey: str | None = None,
                     model: str | None = None) -> VerifiedClaims:
        """Claims for ``evidence`` answering ``nonce``; ``hotkey``/``model``: what the caller expects it to be.
        Raises AttestationFailed, and nothing else, for whatever the evidence holds."""
        try:
            return await self._verify(evidence, nonce, hotkey, model)
        except AttestationFailed:
            raise
        except Exception as exc:
            # the boundary: evidence is untrusted input, and a verifier bug must not stop the caller's service
            log.error("attestation verifier error on %s evidence", evidence.platform, exc_info=True)
            raise AttestationFailed(f"{evidence.platform} evidence could not be verified ({type(exc).__name__}: "
                                    f"{exc})", code="verifier_error") from exc

    async def _verify(self, evidence: Evidence, nonce: bytes, hotkey: str | None,
                      model: str | None) -> VerifiedClaims:
        self.nonces.consume(nonce)
        now = self.clock()
        claims = await self._platform(evidence, now)
        keyset = evidence.keyset
        digest = keyset.digest()
        if not hmac.compare_digest(claims.report_data, report_data_for(digest, nonce)):
            raise AttestationFailed("report_data does not bind this keyset to this challenge: the keyset was "
                                    "substituted or the evidence answers another nonce", code="report_data_mismatch")
        verify_keyset_signature(keyset)
        if hotkey is not None and keyset.hotkey != hotkey:
            raise AttestationFailed(f"keyset is signed by {keyset.hotkey}, not by the miner {hotkey}",
                                    code="keyset_hotkey_mismatch")
        if model is not None and keyset.model(model) is None:
            raise AttestationFailed(f"the attested enclave does not serve model {model!r}", code="model_not_attested")
        gpus = self._gpus(evidence, gpu_nonce_for(digest, nonce), now)
        self.policy.check_platform(claims, gpu_attested=bool(gpus))
        self.policy.check_gpus(gpus, now)
        self.policy.check_keyset(keyset)
        return VerifiedClaims(
            platform=claims.platform, simulated=claims.simulated, measurements=claims.measurements,
            tcb_status=claims.tcb_status, advisory_ids=list(claims.advisory_ids), debug=claims.debug,
            report_data=claims.report_data.hex(), keyset_digest=digest.hex(), hotkey=keyset.hotkey,
            models=[m.id for m in keyset.models], gpu_attested=bool(gpus), gpus=gpus, vmpl=claims.vmpl,
            verified_at=now, expires_at=now + self.policy.max_age_seconds, policy_id=self.policy.policy_id,
        )

    def _gpus(self, evidence: Evidence, gpu_nonce: bytes, now: float) -> list[GpuClaims]:
        return [verify_nvidia_gpu(gpu.report, gpu.certificate_chain.encode(), gpu_nonce, self.anchors.nvidia_roots,
                                  now, self.policy.gpu.chips) for gpu in evidence.gpu]

    async def _platform(self, evidence: Evidence, now: float) -> PlatformClaims:
        if evidence.platform == "tdx":
            screen = TdxScreen(allow_debug=self.policy.allow_debug, service_tds=self.policy.service_tds())
            return await verify_tdx(evidence.quote, evidence.collateral, self.anchors.tdx_collateral, now, screen)
        if evidence.platform == "sev-snp":
            if not evidence.certificate_chain:
                raise AttestationFailed("SEV-SNP evidence carries no VCEK certificate chain", code="evidence_malformed")
            return verify_sev_snp(evidence.quote, evidence.certificate_chain.encode(), self.anchors.amd_roots, now)
        return verify_dev(evidence.quote, self.anchors.dev_enclave_keys)
