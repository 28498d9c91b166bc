"""What a verifier concludes from evidence: typed claims, never a single boolean."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from veilnet.protocol.confidential import Platform

__all__ = ["PlatformClaims", "VerifiedClaims"]


@dataclass(frozen=True)
class PlatformClaims:
    """What one platform verifier proved about a quote or report (before policy and keyset checks)."""

    platform: Platform
    simulated: bool
    measurements: dict[str, str]  # name -> hex (TDX: mr_td, rt_mr0..3; SEV-SNP: measurement; dev: code)
    tcb_status: str  # TDX: dcap-qvl's status ("UpToDate", ...); SEV-SNP: "UpToDate" once the VCEK matches
    debug: bool
    report_data: bytes
    advisory_ids: tuple[str, ...] = ()
    tcb: dict[str, int] = field(default_factory=dict)  # SEV-SNP components: bootloader, tee, snp, microcode


class VerifiedClaims(BaseModel):
    """The verified result for one miner enclave, valid until ``expires_at`` (unix seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: Platform
    simulated: bool
    measurements: dict[str, str]
    tcb_status: str
    advisory_ids: list[str]
    debug: bool
    report_data: str  # hex
    keyset_digest: str  # hex
    hotkey: str
    models: list[str]
    gpu_attested: bool
    verified_at: float
    expires_at: float
    policy_id: str

    def fresh(self, now: float) -> bool:
        return now < self.expires_at
