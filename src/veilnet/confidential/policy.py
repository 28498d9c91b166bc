"""The measurement policy a verifier applies to verified claims: versioned, explicit, failing closed.

A policy names, per platform, the exact measurement sets it accepts (an allowlist), the TCB statuses it
accepts (``UpToDate`` only by default), minimum SEV-SNP TCB components, whether debug TEEs are forbidden
(always, unless the policy says otherwise), whether GPU evidence is required, and which serving-code and
model-weights digests are acceptable. A platform the policy does not list is refused; the development
enclave is refused unless ``allow_simulated`` is set.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.errors import AttestationFailed
from veilnet.errors import ConfigError
from veilnet.protocol.confidential import Keyset, Platform

__all__ = ["MeasurementPolicy", "PlatformRule", "load_policy"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlatformRule(_Section):
    # each entry is one complete accepted set: every named measurement must match (hex, lower case)
    measurements: list[dict[str, str]] = Field(default_factory=list)
    tcb_status: list[str] = Field(default_factory=lambda: ["UpToDate"])
    min_tcb: dict[str, int] = Field(default_factory=dict)  # SEV-SNP: bootloader, tee, snp, microcode


class MeasurementPolicy(_Section):
    id: str = "veilnet"
    version: int = 1
    platforms: dict[Platform, PlatformRule] = Field(default_factory=dict)
    allow_debug: bool = False
    allow_simulated: bool = False  # the development enclave (no hardware guarantee)
    gpu_required: bool = False
    code_sha256: list[str] = Field(default_factory=list)  # accepted serving-code digests; empty = any
    models: dict[str, list[str]] = Field(default_factory=dict)  # model id -> accepted weights digests
    max_age_seconds: float = Field(default=600.0, gt=0)  # how long a verification stays fresh

    @property
    def policy_id(self) -> str:
        return f"{self.id}@{self.version}"

    def check_platform(self, claims: PlatformClaims, *, gpu_attested: bool) -> None:
        """AttestationFailed with the first reason the claims are not acceptable."""
        if claims.simulated and not self.allow_simulated:
            raise AttestationFailed(f"development enclave evidence is not allowed by policy {self.policy_id} "
                                    "(allow_simulated is off)", code="simulated_not_allowed")
        rule = self.platforms.get(claims.platform)
        if rule is None:
            raise AttestationFailed(f"platform {claims.platform} is not accepted by policy {self.policy_id}")
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
        if not any(all(claims.measurements.get(k) == v.lower() for k, v in accepted.items())
                   for accepted in rule.measurements if accepted):
            shown = ", ".join(f"{k}={v[:16]}…" for k, v in sorted(claims.measurements.items()))
            raise AttestationFailed(f"measurements are not in the allowlist of policy {self.policy_id}: {shown}",
                                    code="unknown_measurement")
        if self.gpu_required and not gpu_attested:
            raise AttestationFailed(f"policy {self.policy_id} requires attested GPUs and the evidence has none",
                                    code="gpu_required")

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
        return MeasurementPolicy.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"cannot read attestation policy {path}: {exc}") from exc
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"attestation policy {path} is invalid: {exc}") from exc
