"""Factories for confidential tests: a registered-looking hotkey, a dev enclave and a verifier pinning it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veilnet.confidential import (
    DevEnclaveProvider,
    Enclave,
    EvidenceVerifier,
    MeasurementPolicy,
    PlatformRule,
    TrustAnchors,
)
from veilnet.protocol.confidential import ModelMeasurement

CODE = "c0de" * 16
WEIGHTS = "ab" * 32
MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture
def hotkey() -> Keypair:
    return Keypair.create_from_uri("//ConfidentialMiner")


@pytest.fixture
def dev_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def dev_policy(**overrides: object) -> MeasurementPolicy:
    base: dict[str, object] = {
        "id": "test", "version": 3, "allow_simulated": True,
        "platforms": {"dev": PlatformRule(measurements=[{"code_sha256": CODE}], tcb_status=["Simulated"])},
    }
    base.update(overrides)
    return MeasurementPolicy.model_validate(base)


@pytest.fixture
def make_enclave(hotkey: Keypair, dev_key: Ed25519PrivateKey) -> Callable[..., Enclave]:
    def make(*, key: Keypair | None = None, signing: Ed25519PrivateKey | None = None, debug: bool = False,
             code: str = CODE) -> Enclave:
        provider = DevEnclaveProvider(signing or dev_key, measurements={"code_sha256": code}, debug=debug)
        return Enclave(key or hotkey, provider, [ModelMeasurement(id=MODEL, weights_sha256=WEIGHTS)], code_sha256=code)

    return make


@pytest.fixture
def make_verifier(dev_key: Ed25519PrivateKey) -> Callable[..., EvidenceVerifier]:
    def make(policy: MeasurementPolicy | None = None, *, pin: bool = True, **kwargs: object) -> EvidenceVerifier:
        anchors = TrustAnchors(dev_enclave_keys=(dev_key.public_key(),) if pin else ())
        return EvidenceVerifier(policy or dev_policy(), anchors, **kwargs)  # type: ignore[arg-type]

    return make
