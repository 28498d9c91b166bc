"""Building verifiers and enclaves from :class:`veilnet.settings.ConfidentialSettings`."""

from __future__ import annotations

from pathlib import Path

from bittensor_wallet import Keypair
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from veilnet.confidential.configfs import AmdKds, ConfigfsTsmProvider
from veilnet.confidential.enclave import (
    DevEnclaveProvider,
    Enclave,
    EvidenceProvider,
    file_sha256,
    load_or_create_dev_key,
    serving_code_sha256,
)
from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.gpu import NvmlGpuEvidence
from veilnet.confidential.policy import MeasurementPolicy, load_policy
from veilnet.confidential.verifiers import (
    EvidenceVerifier,
    TdxCollateralSource,
    TrustAnchors,
    load_certificates,
)
from veilnet.errors import ConfigError
from veilnet.protocol.confidential import ModelMeasurement
from veilnet.settings import ConfidentialSettings

__all__ = ["dev_key_path", "enclave_from_settings", "trust_anchors_from_settings", "verifier_from_settings"]


def _certificates(paths: list[Path]) -> tuple[x509.Certificate, ...]:
    out: list[x509.Certificate] = []
    for path in paths:
        try:
            out.extend(load_certificates(path.read_bytes()))
        except (OSError, AttestationFailed) as exc:
            raise ConfigError(f"cannot load root certificates from {path}: {exc}") from exc
    return tuple(out)


def trust_anchors_from_settings(settings: ConfidentialSettings) -> TrustAnchors:
    try:
        dev_keys = tuple(Ed25519PublicKey.from_public_bytes(bytes.fromhex(k)) for k in settings.dev_enclave_public_keys)
    except ValueError as exc:
        raise ConfigError(f"confidential.dev_enclave_public_keys: not a hex Ed25519 public key ({exc})") from exc
    return TrustAnchors(
        dev_enclave_keys=dev_keys,
        amd_roots=_certificates(settings.amd_root_certs),
        nvidia_roots=_certificates(settings.nvidia_root_certs),
        tdx_collateral=TdxCollateralSource(settings.tdx_collateral_dir, settings.pccs_url),
    )


def verifier_from_settings(settings: ConfidentialSettings) -> EvidenceVerifier:
    """The verifier for gateways, validators and client proxies; no policy file = refuse everything."""
    policy = load_policy(settings.policy_file) if settings.policy_file else MeasurementPolicy()
    return EvidenceVerifier(policy, trust_anchors_from_settings(settings), nonce_ttl=settings.nonce_ttl)


def dev_key_path(settings: ConfidentialSettings, data_dir: Path) -> Path:
    return settings.dev_enclave_key_file or data_dir / "dev-enclave.key"


def enclave_from_settings(settings: ConfidentialSettings, data_dir: Path, hotkey: Keypair,
                          weights: dict[str, Path | None]) -> Enclave | None:
    """The miner's enclave (None when ``enclave`` is off). ``weights``: model -> GGUF path, or None for an
    upstream backend, whose digest must then be declared in ``confidential.weights_sha256``."""
    if settings.enclave == "off":
        return None
    models = []
    for model, path in weights.items():
        digest = file_sha256(path) if path is not None else settings.weights_sha256.get(model)
        if digest is None:
            raise ConfigError(f"confidential serving of {model!r} through an upstream needs its weights digest: "
                              f"set confidential.weights_sha256.{model}")
        models.append(ModelMeasurement(id=model, weights_sha256=digest.lower()))
    code = serving_code_sha256()
    provider: EvidenceProvider
    gpus = NvmlGpuEvidence() if settings.gpu_evidence else None
    if settings.enclave == "dev":
        if gpus is not None:
            raise ConfigError("confidential.gpu_evidence needs a hardware enclave (tdx or sev-snp), not dev")
        provider = DevEnclaveProvider(load_or_create_dev_key(dev_key_path(settings, data_dir)),
                                      measurements={"code_sha256": code})
    elif settings.enclave == "sev-snp":
        kds = AmdKds(data_dir / "amd-kds", settings.amd_kds_url, settings.amd_product)
        provider = ConfigfsTsmProvider("sev-snp", kds=kds, gpus=gpus)
    else:
        provider = ConfigfsTsmProvider("tdx", gpus=gpus)
    return Enclave(hotkey, provider, models, code_sha256=code)
