"""The measurement policy a verifier applies to verified claims: versioned, explicit, failing closed.

A policy names, per platform, the exact measurement sets it accepts (an allowlist), the TCB statuses it
accepts (``UpToDate`` only by default), minimum SEV-SNP TCB components, the SEV-SNP VM privilege levels it
accepts (VMPL 0 only by default), the TDX service TDs (MRSERVICETD) it accepts (none by default), whether
debug TEEs are forbidden (always, unless the policy says otherwise), whether GPU evidence is required, which
GPU chips count as GPUs and which GPU measurement sets are accepted, and which serving-code and
model-weights digests are acceptable. A platform the policy does not list is refused; the development
enclave is refused unless ``allow_simulated`` is set.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from veilnet.confidential.claims import GpuClaims, PlatformClaims
from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.verifiers.x509chain import load_certificates
from veilnet.errors import ConfigError
from veilnet.protocol.confidential import Keyset, Platform

if TYPE_CHECKING:  # lxml and signxml load only where a policy names RIMs
    from veilnet.confidential.verifiers.rim import ReferenceManifest

__all__ = ["GpuRule", "MeasurementPolicy", "PlatformRule", "load_policy"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _matches(measurements: dict[str, str], accepted_sets: list[dict[str, str]]) -> bool:
    """True when one accepted set (every named measurement, hex) matches; empty sets match nothing."""
    return any(all(measurements.get(k) == v.lower() for k, v in accepted.items())
               for accepted in accepted_sets if accepted)


class PlatformRule(_Section):
    # each entry is one complete accepted set: every named measurement must match (hex, lower case)
    measurements: list[dict[str, str]] = Field(default_factory=list)
    tcb_status: list[str] = Field(default_factory=lambda: ["UpToDate"])
    min_tcb: dict[str, int] = Field(default_factory=dict)  # SEV-SNP: [fmc,] bootloader, tee, snp, microcode
    vmpl: list[int] = Field(default_factory=lambda: [0])  # SEV-SNP: accepted VM privilege levels
    mr_service_td: list[str] = Field(default_factory=list)  # TDX: accepted non-zero MRSERVICETDs (hex)


class GpuRule(_Section):
    chips: list[str] = Field(default_factory=lambda: ["GH100", "GB100"])  # device identity names that are GPUs
    # accepted measurement sets: SPDM block index (decimal) -> hex; empty = not compared this way
    measurements: list[dict[str, str]] = Field(default_factory=list)
    # NVIDIA RIM files (VBIOS and driver reference values) and the RIM root certificates they must chain to;
    # relative paths are relative to the policy file. When given, every GPU needs a RIM for its VBIOS version
    # and one for its driver version, and matches both.
    rims: list[Path] = Field(default_factory=list)
    rim_roots: list[Path] = Field(default_factory=list)
    _references: tuple[ReferenceManifest, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _load_rims(self) -> GpuRule:
        if not self.rims:
            return self
        from veilnet.confidential.verifiers.rim import load_rim

        if not self.rim_roots:
            raise ConfigError("gpu.rims needs gpu.rim_roots: the certificates NVIDIA's RIMs must chain to")
        try:
            roots = [c for path in self.rim_roots for c in load_certificates(path.read_bytes())]
            self._references = tuple(load_rim(path.read_bytes(), roots, name=path.name) for path in self.rims)
        except (OSError, AttestationFailed) as exc:
            raise ConfigError(f"cannot load the GPU reference values: {exc}") from exc
        return self

    def check(self, gpu: GpuClaims, policy_id: str, now: float) -> None:
        if self.measurements and not _matches(gpu.measurements, self.measurements):
            raise AttestationFailed(f"measurements of GPU {gpu.hwmodel} (driver {gpu.driver_version}, VBIOS "
                                    f"{gpu.vbios_version}) are not in the allowlist of policy {policy_id}",
                                    code="unknown_measurement")
        if not self._references:
            return
        for kind, version in (("VBIOS", gpu.vbios_version), ("driver", gpu.driver_version)):
            rim = next((r for r in self._references if version and r.version.lower() == version.lower()), None)
            if rim is None:
                raise AttestationFailed(f"policy {policy_id} has no reference values (RIM) for the {kind} "
                                        f"{version} of GPU {gpu.hwmodel}", code="unknown_measurement")
            rim.check(gpu.measurements, now)


class MeasurementPolicy(_Section):
    id: str = "veilnet"
    version: int = 1
    platforms: dict[Platform, PlatformRule] = Field(default_factory=dict)
    allow_debug: bool = False
    allow_simulated: bool = False  # the development enclave (no hardware guarantee)
    gpu_required: bool = False
    gpu: GpuRule = Field(default_factory=GpuRule)
    code_sha256: list[str] = Field(default_factory=list)  # accepted serving-code digests; empty = any
    models: dict[str, list[str]] = Field(default_factory=dict)  # model id -> accepted weights digests
    max_age_seconds: float = Field(default=600.0, gt=0)  # how long a verification stays fresh

    @property
    def policy_id(self) -> str:
        return f"{self.id}@{self.version}"

    def service_tds(self) -> frozenset[str]:
        """The non-zero TDX MRSERVICETDs (hex) this policy accepts."""
        rule = self.platforms.get("tdx")
        return frozenset(v.lower() for v in rule.mr_service_td) if rule else frozenset()

    def check_platform(self, claims: PlatformClaims, *, gpu_attested: bool) -> None:
        """AttestationFailed with the first reason the claims are not acceptable."""
        if claims.simulated and not self.allow_simulated:
            raise AttestationFailed(f"development enclave evidence is not allowed by policy {self.policy_id} "
                                    "(allow_simulated is off)", code="simulated_not_allowed")
        rule = self.platforms.get(claims.platform)
        if rule is None:
            raise AttestationFailed(f"platform {claims.platform} is not accepted by policy {self.policy_id}",
                                    code="platform_not_accepted")
        self._check_platform_rule(rule, claims)
        if self.gpu_required and not gpu_attested:
            raise AttestationFailed(f"policy {self.policy_id} requires attested GPUs and the evidence has none",
                                    code="gpu_required")

    def _check_platform_rule(self, rule: PlatformRule, claims: PlatformClaims) -> None:
        if claims.debug and not self.allow_debug:
            raise AttestationFailed(f"{claims.platform} evidence is from a debug-enabled TEE; policy "
                                    f"{self.policy_id} forbids debug", code="debug_forbidden")
        if claims.tcb_status not in rule.tcb_status:
            raise AttestationFailed(f"TCB status {claims.tcb_status} is not accepted (policy {self.policy_id} "
                                    f"accepts {', '.join(rule.tcb_status)})", code="tcb_outdated")
        for component, minimum in rule.min_tcb.items():
            if claims.tcb.get(component, -1) < minimum:
                raise AttestationFailed(f"TCB component {component}={claims.tcb.get(component)} is below the "
                                        f"minimum {minimum} of policy {self.policy_id}", code="tcb_outdated")
        if claims.vmpl is not None and claims.vmpl not in rule.vmpl:
            raise AttestationFailed(f"the report was requested at VMPL {claims.vmpl}; policy {self.policy_id} "
                                    f"accepts VMPL {', '.join(map(str, rule.vmpl))}", code="vmpl_not_allowed")
        service_td = claims.measurements.get("mr_service_td", "00" * 48)
        if service_td != "00" * 48 and service_td not in {v.lower() for v in rule.mr_service_td}:
            raise AttestationFailed(f"TD is bound to service TD {service_td[:16]}…, not accepted by policy "
                                    f"{self.policy_id}", code="service_td_not_allowed")
        if not _matches(claims.measurements, rule.measurements):
            shown = ", ".join(f"{k}={v[:16]}…" for k, v in sorted(claims.measurements.items()))
            raise AttestationFailed(f"measurements are not in the allowlist of policy {self.policy_id}: {shown}",
                                    code="unknown_measurement")

    def check_gpus(self, gpus: list[GpuClaims], now: float) -> None:
        for gpu in gpus:
            self.gpu.check(gpu, self.policy_id, now)

    def check_keyset(self, keyset: Keyset) -> None:
        if self.code_sha256 and keyset.code_sha256 not in self.code_sha256:
            raise AttestationFailed(f"serving code {keyset.code_sha256[:16]}… is not accepted by policy "
                                    f"{self.policy_id}", code="unknown_measurement")
        for model in keyset.models:
            accepted = self.models.get(model.id)
            if accepted is not None and model.weights_sha256 not in accepted:
                raise AttestationFailed(f"weights {model.weights_sha256[:16]}… of model {model.id} are not "
                                        f"accepted by policy {self.policy_id}", code="unknown_measurement")


def load_policy(path: Path) -> MeasurementPolicy:
    """Read a policy from TOML or JSON; ConfigError naming the file and the problem otherwise."""
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        gpu = data.get("gpu") if isinstance(data, dict) else None
        if isinstance(gpu, dict):  # files named by the policy are relative to it
            for key in ("rims", "rim_roots"):
                if isinstance(gpu.get(key), list):
                    gpu[key] = [str(path.parent / str(p)) for p in gpu[key]]
        return MeasurementPolicy.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"cannot read attestation policy {path}: {exc}") from exc
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"attestation policy {path} is invalid: {exc}") from exc
