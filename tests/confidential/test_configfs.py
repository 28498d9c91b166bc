"""Hardware evidence through configfs-tsm, against an emulated report entry that behaves like the kernel's
(``outblob`` is a FIFO that a "kernel" thread answers once ``inblob`` is written, bumping ``generation``),
with real TDX and SEV-SNP reports from tests/data; and the VCEK from AMD's KDS over loopback HTTP."""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.serialization import Encoding

from tests.confidential.samples import SEV_DIR, TDX_DIR
from veilnet.confidential import (
    AmdKds,
    AttestationFailed,
    ConfigfsTsmProvider,
    Enclave,
    certificates_from_table,
)
from veilnet.confidential.configfs import amd_product
from veilnet.confidential.verifiers import load_certificates, verify_sev_snp
from veilnet.protocol.confidential import ModelMeasurement

PINNED = 1750331763
MINER = Keypair.create_from_uri("//ConfigfsMiner")
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")


def cert_table(entries: list[tuple[uuid.UUID, bytes]]) -> bytes:
    header = struct.calcsize("<16sII") * (len(entries) + 1)
    table, blobs = b"", b""
    for guid, der in entries:
        table += struct.pack("<16sII", guid.bytes, header + len(blobs), len(der))
        blobs += der
    return table + bytes(24) + blobs


class KernelEntry:
    """``root/veilnet-<pid>`` as the kernel presents it: answers one report request per ``answer``."""

    def __init__(self, root: Path, driver: str, report: bytes, auxblob: bytes = b"") -> None:
        self.entry = root / f"veilnet-{os.getpid()}"
        self.entry.mkdir(parents=True)
        (self.entry / "provider").write_text(driver + "\n")
        (self.entry / "generation").write_text("7\n")
        (self.entry / "auxblob").write_bytes(auxblob)
        os.mkfifo(self.entry / "outblob")
        self.report = report
        self.inblob: bytes | None = None

    def answer(self) -> threading.Thread:
        def kernel() -> None:
            with open(self.entry / "outblob", "wb") as out:  # blocks until the guest reads outblob
                self.inblob = (self.entry / "inblob").read_bytes()
                generation = int((self.entry / "generation").read_text())
                (self.entry / "generation").write_text(f"{generation + 1}\n")
                out.write(self.report)

        thread = threading.Thread(target=kernel, daemon=True)
        thread.start()
        return thread


def enclave(provider: ConfigfsTsmProvider) -> Enclave:
    return Enclave(MINER, provider, [ModelMeasurement(id="m", weights_sha256="ab" * 32)], code_sha256="cd" * 32)


@pytest.fixture
def sev() -> Iterator[tuple[bytes, bytes]]:
    report = (SEV_DIR / "gosev_attestation.bin").read_bytes()
    vcek = load_certificates((SEV_DIR / "gosev_vcek.testcer").read_bytes())[0].public_bytes(Encoding.DER)
    yield report, vcek


async def test_tdx_quote_comes_from_outblob_for_the_keyset_binding(tmp_path: Path) -> None:
    quote = (TDX_DIR / "dcapqvl_tdx_quote").read_bytes()
    kernel = KernelEntry(tmp_path, "tdx_guest", quote)
    guest = enclave(ConfigfsTsmProvider("tdx", root=tmp_path))
    answering = kernel.answer()
    evidence = await guest.attest(b"\x01" * 32)
    answering.join(5)
    assert evidence.platform == "tdx" and evidence.quote == quote and evidence.certificate_chain is None
    assert kernel.inblob is not None and len(kernel.inblob) == 64  # the keyset-and-nonce binding went in


async def test_sev_snp_report_with_the_hosts_certificate_table(sev: tuple[bytes, bytes], tmp_path: Path) -> None:
    report, vcek = sev
    table = cert_table([(uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"), vcek), (VCEK_GUID, vcek)])
    kernel = KernelEntry(tmp_path, "sev_guest", report, table)
    answering = kernel.answer()
    evidence = await enclave(ConfigfsTsmProvider("sev-snp", root=tmp_path)).attest(b"\x02" * 32)
    answering.join(5)
    assert evidence.platform == "sev-snp" and evidence.quote == report
    assert evidence.certificate_chain is not None
    chain = load_certificates(evidence.certificate_chain.encode())
    assert chain[0].public_bytes(Encoding.DER) == vcek  # the VCEK first, whatever the table's order
    assert len(chain) == 2  # VCEK, then the "ASK" (the vector has no real ASK: the VCEK stands in)
    claims = verify_sev_snp(evidence.quote, chain[0].public_bytes(Encoding.PEM), chain[:1], PINNED)
    assert claims.report_data[:5] == bytes([1, 2, 3, 4, 5])


async def test_wrong_driver_or_a_concurrent_rewrite_fails_closed(sev: tuple[bytes, bytes], tmp_path: Path) -> None:
    report, _ = sev
    KernelEntry(tmp_path, "sev_guest", report)
    with pytest.raises(AttestationFailed, match="provider is 'sev_guest', not tdx_guest"):
        await enclave(ConfigfsTsmProvider("tdx", root=tmp_path)).attest(b"\x03" * 32)
    # a plain file where the kernel would answer: generation never moves, so the report is not trusted
    entry = tmp_path / f"veilnet-{os.getpid()}"
    (entry / "outblob").unlink()
    (entry / "outblob").write_bytes(report)
    with pytest.raises(AttestationFailed, match="rewritten concurrently"):
        await enclave(ConfigfsTsmProvider("sev-snp", root=tmp_path)).attest(b"\x04" * 32)
    with pytest.raises(AttestationFailed, match="is this a tdx guest"):
        await enclave(ConfigfsTsmProvider("tdx", root=tmp_path / "absent" / "deeper")).attest(b"\x05" * 32)


async def test_without_a_table_the_vcek_comes_from_amd_kds_once(sev: tuple[bytes, bytes], tmp_path: Path) -> None:
    report, vcek = sev
    assert amd_product(report, "Genoa") == "Genoa"  # a version-2 report names no CPUID: the configured product
    chip = report[0x1A0:0x1E0].hex()
    tcb = report[0x180:0x188]
    asked: list[str] = []

    async def vcek_for(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        expected = {"blSPL": str(tcb[0]), "teeSPL": str(tcb[1]), "snpSPL": str(tcb[6]), "ucodeSPL": str(tcb[7])}
        if request.match_info["hwid"] != chip or dict(request.query) != expected:
            return web.Response(status=404)
        return web.Response(body=vcek)

    async def cert_chain(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        pem = load_certificates(vcek)[0].public_bytes(Encoding.PEM)  # stands in for AMD's ASK and ARK
        return web.Response(body=pem)

    app = web.Application()
    app.router.add_get("/vcek/v1/Genoa/cert_chain", cert_chain)
    app.router.add_get("/vcek/v1/Genoa/{hwid}", vcek_for)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        kds = AmdKds(tmp_path / "kds", f"http://127.0.0.1:{port}", "Genoa")
        for attempt in range(2):
            root = tmp_path / f"tsm{attempt}"
            kernel = KernelEntry(root, "sev_guest", report)  # the host hands over no certificates
            answering = kernel.answer()
            evidence = await enclave(ConfigfsTsmProvider("sev-snp", root=root, kds=kds)).attest(b"\x06" * 32)
            answering.join(5)
            assert evidence.certificate_chain is not None
            leaf = load_certificates(evidence.certificate_chain.encode())[0]
            assert leaf.public_bytes(Encoding.DER) == vcek
        assert len(asked) == 2  # the VCEK and the chain, once: the second report used the cache
        unreachable = AmdKds(tmp_path / "empty", "http://127.0.0.1:9", "Genoa")
        with pytest.raises(AttestationFailed, match="AMD KDS unreachable"):
            await unreachable.chain_for(report)
        other_chip = bytearray(report)
        other_chip[0x1A0] ^= 0xFF
        with pytest.raises(AttestationFailed, match="HTTP 404"):
            await kds.chain_for(bytes(other_chip))
    finally:
        await runner.cleanup()


def test_certificate_table_parsing(sev: tuple[bytes, bytes]) -> None:
    _, vcek = sev
    assert certificates_from_table(cert_table([])) is None
    assert certificates_from_table(cert_table([(uuid.uuid4(), vcek)])) is None  # unknown entries are skipped
    little_endian = cert_table([(VCEK_GUID, vcek)])
    little_endian = VCEK_GUID.bytes_le + little_endian[16:]
    assert certificates_from_table(little_endian) is not None
    broken = bytearray(cert_table([(VCEK_GUID, vcek)]))
    struct.pack_into("<I", broken, 20, len(broken) * 2)  # the length runs past the table
    with pytest.raises(AttestationFailed, match="outside the table"):
        certificates_from_table(bytes(broken))


def test_settings_choose_the_platform_and_the_kds(tmp_path: Path) -> None:
    from veilnet.confidential.config import enclave_from_settings
    from veilnet.settings import ConfidentialSettings

    weights = {"m": None}
    settings = ConfidentialSettings(enclave="sev-snp", weights_sha256={"m": "ab" * 32},
                                    amd_kds_url="http://127.0.0.1:9", amd_product="Turin")
    sev_enclave = enclave_from_settings(settings, tmp_path, MINER, weights)
    assert sev_enclave is not None and isinstance(sev_enclave.provider, ConfigfsTsmProvider)
    assert sev_enclave.provider.platform == "sev-snp" and sev_enclave.provider.kds is not None
    assert sev_enclave.provider.kds.base_url == "http://127.0.0.1:9"
    assert sev_enclave.provider.kds.default_product == "Turin"
    assert sev_enclave.provider.kds.cache_dir == tmp_path / "amd-kds"
    tdx_enclave = enclave_from_settings(ConfidentialSettings(enclave="tdx", weights_sha256={"m": "ab" * 32}),
                                        tmp_path, MINER, weights)
    assert tdx_enclave is not None and isinstance(tdx_enclave.provider, ConfigfsTsmProvider)
    assert tdx_enclave.provider.platform == "tdx" and tdx_enclave.provider.kds is None
