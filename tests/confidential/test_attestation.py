"""Evidence -> verified claims: the keyset binding, nonces, hotkey signatures and the policy, end to end
with the development enclave (hardware verifiers are covered by test_vectors.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.confidential.conftest import MODEL, dev_policy
from veilnet.confidential import AttestationFailed, AttestedSessions, Enclave, EvidenceVerifier, sign_keyset
from veilnet.confidential.enclave import EnclaveKeyPair


async def test_dev_enclave_evidence_verifies_into_typed_simulated_claims(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    enclave, verifier = make_enclave(), make_verifier(clock=lambda: 1000.0)
    nonce = verifier.challenge()
    claims = await verifier.verify(await enclave.attest(nonce), nonce, hotkey=enclave.keyset.hotkey, model=MODEL)
    assert claims.platform == "dev" and claims.simulated is True
    assert claims.tcb_status == "Simulated" and claims.debug is False and claims.gpu_attested is False
    assert claims.keyset_digest == enclave.keyset_digest.hex()
    assert claims.models == [MODEL]
    assert claims.policy_id == "test@3"
    assert (claims.verified_at, claims.expires_at) == (1000.0, 1600.0)


async def test_nonce_replay_is_refused(make_enclave: Callable[..., Enclave],
                                       make_verifier: Callable[..., EvidenceVerifier]) -> None:
    enclave, verifier = make_enclave(), make_verifier()
    nonce = verifier.challenge()
    evidence = await enclave.attest(nonce)
    await verifier.verify(evidence, nonce)
    with pytest.raises(AttestationFailed, match="already used") as refused:
        await verifier.verify(evidence, nonce)
    assert refused.value.code == "nonce_replayed"
    with pytest.raises(AttestationFailed, match="not issued by this verifier"):
        await verifier.verify(evidence, bytes(32))


async def test_expired_nonce_is_refused(make_enclave: Callable[..., Enclave],
                                        make_verifier: Callable[..., EvidenceVerifier]) -> None:
    now = [0.0]
    verifier = make_verifier(clock=lambda: now[0], nonce_ttl=5.0)
    nonce = verifier.challenge()
    evidence = await make_enclave().attest(nonce)
    now[0] = 6.0
    with pytest.raises(AttestationFailed, match="expired"):
        await verifier.verify(evidence, nonce)


async def test_key_substitution_breaks_the_report_data_binding(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier], hotkey: Keypair
) -> None:
    verifier = make_verifier()
    nonce = verifier.challenge()
    evidence = await make_enclave().attest(nonce)
    # a key directory (or the gateway) swaps in its own HPKE key and even re-signs with the miner's hotkey
    swapped = sign_keyset(evidence.keyset.model_copy(update={"hpke_public_key": EnclaveKeyPair.generate().public_bytes}),
                          hotkey)
    with pytest.raises(AttestationFailed, match="report_data does not bind") as refused:
        await verifier.verify(evidence.model_copy(update={"keyset": swapped}), nonce)
    assert refused.value.code == "report_data_mismatch"


async def test_keyset_signed_by_another_hotkey_is_refused(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    verifier = make_verifier()
    borrower = Keypair.create_from_uri("//Borrower")
    # the enclave belongs to the borrower's hotkey, but is presented as another miner's
    nonce = verifier.challenge()
    evidence = await make_enclave(key=borrower).attest(nonce)
    with pytest.raises(AttestationFailed, match="not by the miner") as refused:
        await verifier.verify(evidence, nonce, hotkey=Keypair.create_from_uri("//ConfidentialMiner").ss58_address)
    assert refused.value.code == "keyset_hotkey_mismatch"
    # a keyset claiming the miner's hotkey but signed by another key
    nonce = verifier.challenge()
    evidence = await make_enclave().attest(nonce)
    forged = evidence.keyset.model_copy(update={"hotkey_signature": "0x" + bytes(borrower.sign(b"x")).hex()})
    with pytest.raises(AttestationFailed):
        await verifier.verify(evidence.model_copy(update={"keyset": forged}), nonce)


async def test_dev_enclave_needs_an_explicit_allowance_and_a_pinned_key(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    enclave = make_enclave()
    strict = make_verifier(dev_policy(allow_simulated=False))
    nonce = strict.challenge()
    with pytest.raises(AttestationFailed, match="allow_simulated is off") as refused:
        await strict.verify(await enclave.attest(nonce), nonce)
    assert refused.value.code == "simulated_not_allowed"
    unpinned = make_verifier(pin=False)
    nonce = unpinned.challenge()
    with pytest.raises(AttestationFailed, match="no development enclave key is pinned"):
        await unpinned.verify(await enclave.attest(nonce), nonce)
    other_key = make_enclave(signing=Ed25519PrivateKey.generate())
    pinned = make_verifier()
    nonce = pinned.challenge()
    with pytest.raises(AttestationFailed, match="not signed by a pinned key"):
        await pinned.verify(await other_key.attest(nonce), nonce)


async def test_debug_unknown_measurement_gpu_and_model_rules(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    async def refusal(enclave: Enclave, verifier: EvidenceVerifier, **expect: str) -> str:
        nonce = verifier.challenge()
        with pytest.raises(AttestationFailed) as refused:
            await verifier.verify(await enclave.attest(nonce), nonce, **expect)
        return refused.value.code

    assert await refusal(make_enclave(debug=True), make_verifier()) == "debug_forbidden"
    assert await refusal(make_enclave(code="ee" * 32), make_verifier()) == "unknown_measurement"
    assert await refusal(make_enclave(), make_verifier(dev_policy(gpu_required=True))) == "gpu_required"
    assert await refusal(make_enclave(), make_verifier(dev_policy(models={MODEL: ["cd" * 32]}))) == "unknown_measurement"
    assert await refusal(make_enclave(), make_verifier(), model="gemma-3-270m") == "model_not_attested"
    assert await refusal(make_enclave(), make_verifier(dev_policy(platforms={}))) == "platform_not_accepted"


async def test_sessions_verify_once_until_expiry(make_enclave: Callable[..., Enclave],
                                                 make_verifier: Callable[..., EvidenceVerifier]) -> None:
    now = [0.0]
    enclave = make_enclave()
    sessions = AttestedSessions(make_verifier(dev_policy(max_age_seconds=30), clock=lambda: now[0]))
    challenges = []

    async def fetch(nonce: bytes):  # type: ignore[no-untyped-def]
        challenges.append(nonce)
        return await enclave.attest(nonce)

    hotkey = enclave.keyset.hotkey
    first = await sessions.ensure(hotkey, fetch, model=MODEL)
    again = await sessions.ensure(hotkey, fetch, model=MODEL)
    assert first is again and len(challenges) == 1
    now[0] = 31.0
    assert sessions.get(hotkey) is None
    await sessions.ensure(hotkey, fetch)
    assert len(challenges) == 2 and challenges[0] != challenges[1]
