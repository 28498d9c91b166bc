"""Mutations of every kind of real evidence: each targeted change is refused with the reason that names it,
and a randomized loop (byte flips, overwrites, truncations, insertions, deletions, appended bytes) over every
real sample and its certificates and collateral sees nothing but AttestationFailed with a specific reason;
a mutation that is accepted (bytes no signature covers and no check reads) changes no claim."""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.confidential.conftest import MODEL
from tests.confidential.quote_surgery import pck_pems, split, with_certification_data
from tests.confidential.samples import (
    GPU_SAMPLES,
    PINNED,
    SEV_DIR,
    SEV_SAMPLES,
    TDX_QUOTES_ONLY,
    TDX_VERIFIABLE,
    gpu,
    nvidia_root,
    sev,
    tdx,
)
from veilnet.confidential import ATTESTATION_REASONS, AttestationFailed, Enclave, EvidenceVerifier
from veilnet.confidential.verifiers import (
    TdxCollateralSource,
    load_certificates,
    verify_nvidia_gpu,
    verify_sev_snp,
    verify_tdx,
)
from veilnet.protocol.confidential import Evidence

SPECIFIC = ATTESTATION_REASONS - {"attestation_failed", "verifier_error"}
TD_REPORT = 48  # the TD report follows the quote header


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


async def tdx_code(quote: bytes, collateral: dict[str, Any] | None, now: float = PINNED) -> str:
    with pytest.raises(AttestationFailed) as failed:
        await verify_tdx(quote, collateral, TdxCollateralSource(), now)
    return failed.value.code


def sev_code(report: bytes, chain: bytes, roots: list[Any], now: float = PINNED) -> str:
    with pytest.raises(AttestationFailed) as failed:
        verify_sev_snp(report, chain, roots, now)
    return failed.value.code


def gpu_code(report: bytes, chain: bytes, nonce: bytes, now: float = PINNED) -> str:
    with pytest.raises(AttestationFailed) as failed:
        verify_nvidia_gpu(report, chain, nonce, nvidia_root(), now)
    return failed.value.code


# --- targeted: TDX -------------------------------------------------------------------------------------------

async def test_tdx_mutations_are_refused_with_their_reason() -> None:
    sample = tdx()
    quote, collateral = sample.quote, sample.collateral
    assert collateral is not None
    body_end = TD_REPORT + 584
    assert await tdx_code(flip(quote, body_end + 4 + 10), collateral) == "quote_invalid"  # the ECDSA signature
    assert await tdx_code(flip(quote, TD_REPORT + 520), collateral) == "quote_invalid"  # report_data
    assert await tdx_code(flip(quote, TD_REPORT), collateral) == "quote_invalid"  # TEE_TCB_SVN
    assert await tdx_code(flip(quote, TD_REPORT + 136), collateral) == "quote_invalid"  # MRTD
    assert await tdx_code(flip(quote, TD_REPORT + 120), collateral) == "debug_forbidden"  # TDATTRIBUTES.DEBUG
    for length in (0, 47, 48, body_end, body_end + 100, len(quote) - 500):
        assert await tdx_code(quote[:length], collateral) == "evidence_malformed", length
    pems = pck_pems(quote)
    assert await tdx_code(with_certification_data(quote, 5, pems[1] + pems[0] + pems[2]), collateral) \
        == "evidence_malformed"  # chain swapped: an intermediate first
    foreign = pck_pems(tdx("gotdx_tdx_prod_quote_SPR_E4.dat").quote)[0]  # another platform's real PCK leaf
    assert await tdx_code(with_certification_data(quote, 5, foreign + pems[1] + pems[2]), collateral) \
        == "quote_invalid"
    assert split(with_certification_data(quote, 5, foreign))[3] == foreign


@pytest.mark.parametrize(("field", "edit"), [
    ("tcb_info", lambda v: v.replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18')),
    ("tcb_info", lambda v: v.replace("2025-07-19", "2035-07-19")),  # stretched validity
    ("qe_identity", lambda v: v.replace('"isvprodid":2', '"isvprodid":3')),
    ("tcb_info_signature", lambda v: ("0" if v[0] != "0" else "1") + v[1:]),
    ("pck_crl", lambda v: v[:-2] + ("00" if v[-2:] != "00" else "01")),
], ids=["tcb-info", "tcb-info-validity", "qe-identity", "tcb-signature", "pck-crl"])
async def test_tdx_tampered_collateral_is_refused(field: str, edit: Callable[[str], str]) -> None:
    sample = tdx()
    assert sample.collateral is not None
    tampered = dict(sample.collateral, **{field: edit(str(sample.collateral[field]))})
    assert tampered[field] != sample.collateral[field]
    assert await tdx_code(sample.quote, tampered) in ("quote_invalid", "collateral_malformed")


async def test_tdx_clock_outside_validity() -> None:
    sample = tdx()
    assert await tdx_code(sample.quote, sample.collateral, PINNED - 86400 * 365) == "collateral_expired"
    assert await tdx_code(sample.quote, sample.collateral, PINNED + 86400 * 40) == "collateral_expired"


# --- targeted: SEV-SNP ---------------------------------------------------------------------------------------

def test_sev_snp_mutations_are_refused_with_their_reason() -> None:
    sample = sev("virtee")
    report, chain, roots = sample.report, sample.chain, sample.roots
    for offset, what in ((0x2A0 + 5, "signature"), (0x50, "report data"), (0x180, "reported TCB"),
                         (0x90, "measurement"), (0x0A, "guest policy (debug bit 19)"), (0x30, "VMPL")):
        assert sev_code(flip(report, offset, 0x08 if offset == 0x0A else 0x01), chain, roots) \
            == "signature_invalid", what
    for length in (0, 0x2A0, 0x4A0 - 1):
        assert sev_code(report[:length], chain, roots) == "evidence_malformed"
    vcek, ask = load_certificates(chain)
    swapped = ask.public_bytes(Encoding.PEM) + vcek.public_bytes(Encoding.PEM)
    assert sev_code(report, swapped, roots) == "certificate_invalid"  # chain order swapped
    turin_ask = load_certificates((SEV_DIR / "gosev_ask_ark_turin_vcek.pem").read_bytes())[0]
    assert sev_code(report, vcek.public_bytes(Encoding.PEM) + turin_ask.public_bytes(Encoding.PEM), roots) \
        in ("certificate_invalid", "untrusted_root")
    der = bytearray(vcek.public_bytes(Encoding.DER))
    der[400] ^= 0x01  # inside the VCEK's signed body (its public key)
    tampered = load_certificates(bytes(der))[0].public_bytes(Encoding.PEM) + ask.public_bytes(Encoding.PEM)
    assert sev_code(report, tampered, roots) == "certificate_invalid"
    assert sev_code(report, chain, roots, PINNED + 86400 * 365 * 30) == "certificate_expired"


# --- targeted: NVIDIA ----------------------------------------------------------------------------------------

def test_nvidia_mutations_are_refused_with_their_reason() -> None:
    sample = gpu()
    report, chain, nonce = sample.report, sample.chain, sample.nonce
    assert gpu_code(flip(report, len(report) - 10), chain, nonce) == "signature_invalid"  # the signature
    assert gpu_code(report, chain, flip(nonce, 0)) == "nonce_mismatch"  # another challenge
    assert gpu_code(flip(report, 4), chain, flip(nonce, 0)) == "signature_invalid"  # nonce edited in the report
    assert gpu_code(flip(report, 37 + 8 + 4 + 3 + 5), chain, nonce) == "signature_invalid"  # a measurement value
    for length in (0, 36, 37 + 7, 37 + 8 + 100, len(report) - 1):
        assert gpu_code(report[:length], chain, nonce) == "evidence_malformed"
    certs = load_certificates(chain)
    pem = [c.public_bytes(Encoding.PEM) for c in certs]
    assert gpu_code(report, pem[1] + pem[0] + b"".join(pem[2:]), nonce) == "certificate_invalid"
    assert gpu_code(report, gpu("nvtrust").chain, nonce) == "signature_invalid"  # another GPU's real chain
    assert gpu_code(report, chain, nonce, PINNED - 86400 * 365 * 6) == "certificate_expired"  # before 2020-10


# --- randomized: nothing but named refusals ------------------------------------------------------------------

class Mutator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def __call__(self, data: bytes) -> bytes:
        rng, out = self.rng, bytearray(data)
        kind = rng.randrange(6)
        if kind == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            for _ in range(rng.randint(2, 8)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == 2:
            del out[rng.randrange(len(out) + 1):]
        elif kind == 3:
            out += rng.randbytes(rng.randint(1, 64))
        elif kind == 4 and out:
            at = rng.randrange(len(out))
            del out[at:at + rng.randint(1, 32)]
        else:
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        return bytes(out)


def _tally(outcomes: Counter[str], failure: AttestationFailed | None) -> None:
    if failure is None:
        outcomes["accepted"] += 1
        return
    assert failure.code in SPECIFIC, failure
    outcomes[failure.code] += 1


#: Seeds that once found a crash, kept besides each sample's own: 342 mutates td15ex's PCK certificate into one
#: with a duplicate extension.
FOUND = {"dcapqvl_tdx_quote_td15ex": 342}


@pytest.mark.parametrize("name", sorted(TDX_VERIFIABLE) + TDX_QUOTES_ONLY)
async def test_random_mutations_of_real_tdx_evidence(name: str) -> None:
    sample = tdx(name, TDX_VERIFIABLE.get(name, PINNED))
    original = None
    if name in TDX_VERIFIABLE:
        original = await verify_tdx(sample.quote, sample.collateral, TdxCollateralSource(), sample.now)
    for seed in [zlib.crc32(name.encode()) & 0xFFFF, *([FOUND[name]] if name in FOUND else [])]:
        mutate, outcomes = Mutator(seed), Counter[str]()
        for round_ in range(150):
            quote, collateral = mutate(sample.quote), sample.collateral
            if collateral is not None and round_ % 5 == 0:  # now and then the collateral instead
                field = mutate.rng.choice(sorted(collateral))
                quote, collateral = sample.quote, dict(collateral, **{field: mutate(str(collateral[field]).encode())
                                                                      .decode("latin-1")})
            try:
                claims = await verify_tdx(quote, collateral, TdxCollateralSource(), sample.now)
            except AttestationFailed as failure:
                _tally(outcomes, failure)
                continue
            _tally(outcomes, None)
            assert claims == original  # accepted: bytes no signature covers and no check reads
        assert sum(outcomes.values()) == 150 and outcomes["accepted"] < 150


@pytest.mark.parametrize("name", SEV_SAMPLES)
def test_random_mutations_of_real_sev_snp_evidence(name: str) -> None:
    sample = sev(name)
    original = verify_sev_snp(sample.report, sample.chain, sample.roots, sample.now)
    mutate, outcomes = Mutator(len(name)), Counter[str]()
    for round_ in range(100):
        report, chain = (sample.report, mutate(sample.chain)) if round_ % 3 == 0 else \
            (mutate(sample.report), sample.chain)
        try:
            claims = verify_sev_snp(report, chain, sample.roots, sample.now)
        except AttestationFailed as failure:
            _tally(outcomes, failure)
            continue
        _tally(outcomes, None)
        assert claims == original
    assert outcomes["signature_invalid"] and outcomes["evidence_malformed"]


@pytest.mark.parametrize("name", sorted(GPU_SAMPLES))
def test_random_mutations_of_real_nvidia_evidence(name: str) -> None:
    sample = gpu(name)
    original = verify_nvidia_gpu(sample.report, sample.chain, sample.nonce, nvidia_root(), PINNED)
    mutate, outcomes = Mutator(len(name) * 7), Counter[str]()
    for round_ in range(100):
        report, chain = (sample.report, mutate(sample.chain)) if round_ % 3 == 0 else \
            (mutate(sample.report), sample.chain)
        try:
            claims = verify_nvidia_gpu(report, chain, sample.nonce, nvidia_root(), PINNED)
        except AttestationFailed as failure:
            _tally(outcomes, failure)
            continue
        _tally(outcomes, None)
        assert claims == original
    assert outcomes["signature_invalid"] and outcomes["evidence_malformed"]


async def test_random_mutations_of_whole_evidence_documents_at_the_verifier(
    make_enclave: Callable[..., Enclave], make_verifier: Callable[..., EvidenceVerifier]
) -> None:
    verifier, enclave, mutate = make_verifier(), make_enclave(), Mutator(20)
    outcomes = Counter[str]()
    for _ in range(150):
        nonce = verifier.challenge()
        document = (await enclave.attest(nonce)).model_dump_json().encode()
        try:
            evidence = Evidence.model_validate_json(mutate(document))
        except ValueError:  # what challenge.fetch_evidence refuses as evidence_malformed
            outcomes["not evidence"] += 1
            continue
        try:
            await verifier.verify(evidence, nonce, model=MODEL)
        except AttestationFailed as failure:
            _tally(outcomes, failure)
            continue
        outcomes["accepted"] += 1
    assert outcomes["not evidence"] and len(outcomes) > 2
    assert json.loads(document)["platform"] == "dev"
