"""What a verifier concludes from evidence: typed claims, never a single boolean."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from veilnet.protocol.confidential import Platform

__all__ = ["GpuClaims", "PlatformClaims", "VerifiedClaims"]


@dataclass(frozen=True)
class PlatformClaims:
    """What one platform verifier proved about a quote or report (before policy and keyset checks)."""

    platform: Platform
    simulated: bool
    # name -> hex. TDX: mr_td, rt_mr0..3, mr_config_id, mr_service_td (zeros below TD 1.5); SEV-SNP:
    # measurement, host_data, id_key_digest, author_key_digest; dev: code_sha256
    measurements: dict[str, str]
    # TDX: dcap-qvl's status ("UpToDate", ...). SEV-SNP: "UpToDate" when the report is signed at the TCB the
    # firmware runs, "OutOfDate" when its reported TCB (the signing key's) is below that.
    tcb_status: str
    debug: bool
    report_data: bytes
    advisory_ids: tuple[str, ...] = ()
    tcb: dict[str, int] = field(default_factory=dict)  # SEV-SNP reported TCB: [fmc,] bootloader, tee, snp, microcode
    vmpl: int | None = None  # SEV-SNP: the VM privilege level that requested the report


class GpuClaims(BaseModel):
    """What one NVIDIA GPU's verified measurement report says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hwmodel: str  # the device identity certificate's name, as NVIDIA's verifier reports it ("GH100 A01 GSP BROM")
    chip: str  # its first word ("GH100")
    driver_version: str | None
    vbios_version: str | None
    measurements: dict[str, str]  # SPDM block index (decimal) -> hex


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
    gpus: list[GpuClaims] = []
    vmpl: int | None = None
    verified_at: float
    expires_at: float
    policy_id: str

    def fresh(self, now: float) -> bool:
        return now < self.expires_at
