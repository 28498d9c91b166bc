"""TDX collateral fetched by dcap-qvl from a PCCS: a real loopback HTTP server speaking Intel's PCCS (PCS v4) API.

The fake PCCS serves the pieces of the public sample collateral (tests/data/attestation/tdx) the way a PCCS
does (dcap-qvl 0.7's ``get_collateral``, src/collateral.rs): the PCK CRL as DER with its issuer chain in
``SGX-PCK-CRL-Issuer-Chain``, TDX TCB info and TD QE identity as ``{"tcbInfo"|"enclaveIdentity": ..., "signature":
hex}`` with their chains in ``TCB-Info-Issuer-Chain`` / ``SGX-Enclave-Identity-Issuer-Chain`` (URL-encoded PEM),
and the root CA CRL hex-encoded. The quote embeds its PCK chain (certification data type 5), so no ``pckcert``
request is made. Every failure must surface as :class:`AttestationFailed`, never a pass or a raw exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import quote as urlquote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.confidential.samples import TDX_DIR
from tests.conftest import free_port, serve_asgi
from veilnet.confidential import AttestationFailed, TdxCollateralSource
from veilnet.confidential.verifiers import verify_tdx

PINNED = 1750331763  # inside the sample collateral's validity (2025-06-19 .. 2025-07-19)
FMSPC = "B0C06F000000"
V4 = "/certification/v4"
EXPECTED_REQUESTS = [  # in the order dcap-qvl 0.7 asks for them
    f"/sgx{V4}/pckcrl?ca=platform&encoding=der",  # the PCK leaf is issued by the Platform CA
    f"/tdx{V4}/tcb?fmspc={FMSPC}&update=standard",  # 0.7 adds update= (master's collateral.rs does not)
    f"/tdx{V4}/qe/identity?update=standard",
    f"/sgx{V4}/rootcacrl",
]

Tamper = Callable[[str, Response], Response]


@dataclass
class FakePccs:
    """Serves one collateral bundle over PCS v4 routes and records every request (path?query)."""

    collateral: dict[str, str]
    tamper: Tamper | None = None
    requests: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(f"/sgx{V4}/pckcrl", self.pck_crl),
            Route(f"/tdx{V4}/tcb", self.tcb_info),
            Route(f"/tdx{V4}/qe/identity", self.qe_identity),
            Route(f"/sgx{V4}/rootcacrl", self.root_ca_crl),
            Route("/{rest:path}", self.not_found),
        ])

    def _answer(self, request: Request, response: Response) -> Response:
        self.requests.append(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return self.tamper(request.url.path, response) if self.tamper else response

    async def pck_crl(self, request: Request) -> Response:
        if request.query_params.get("ca") not in ("processor", "platform") or \
                request.query_params.get("encoding") != "der":
            return self._answer(request, Response("bad ca or encoding", 400))
        return self._answer(request, Response(
            bytes.fromhex(self.collateral["pck_crl"]), media_type="application/pkix-crl",
            headers={"SGX-PCK-CRL-Issuer-Chain": urlquote(self.collateral["pck_crl_issuer_chain"], safe="")}))

    async def tcb_info(self, request: Request) -> Response:
        if request.query_params.get("fmspc", "").upper() != FMSPC:
            return self._answer(request, Response("no TCB info for this FMSPC", 404))
        body = f'{{"tcbInfo":{self.collateral["tcb_info"]},"signature":"{self.collateral["tcb_info_signature"]}"}}'
        return self._answer(request, Response(
            body, media_type="application/json",
            headers={"TCB-Info-Issuer-Chain": urlquote(self.collateral["tcb_info_issuer_chain"], safe="")}))

    async def qe_identity(self, request: Request) -> Response:
        body = (f'{{"enclaveIdentity":{self.collateral["qe_identity"]},'
                f'"signature":"{self.collateral["qe_identity_signature"]}"}}')
        chain = urlquote(self.collateral["qe_identity_issuer_chain"], safe="")
        return self._answer(request, Response(body, media_type="application/json",
                                              headers={"SGX-Enclave-Identity-Issuer-Chain": chain}))

    async def root_ca_crl(self, request: Request) -> Response:
        # a PCCS answers hex (Intel's PCS answers DER); dcap-qvl hex-decodes it when the URL is not Intel's
        return self._answer(request, Response(self.collateral["root_ca_crl"], media_type="text/plain"))

    async def not_found(self, request: Request) -> Response:
        return self._answer(request, Response("not found", 404))


@pytest.fixture
def sample() -> tuple[bytes, dict[str, str]]:
    return ((TDX_DIR / "dcapqvl_tdx_quote").read_bytes(),
            json.loads((TDX_DIR / "dcapqvl_tdx_quote_collateral.json").read_text()))


@pytest.fixture
async def pccs(sample: tuple[bytes, dict[str, str]]) -> AsyncIterator[tuple[FakePccs, str]]:
    fake = FakePccs(sample[1])
    async with serve_asgi(fake.app(), lifespan="off") as url:
        yield fake, url


@pytest.mark.parametrize("suffix", ["", "/", "/sgx/certification/v4"])
async def test_tdx_quote_verifies_with_collateral_fetched_from_a_pccs(
        sample: tuple[bytes, dict[str, str]], pccs: tuple[FakePccs, str], suffix: str) -> None:
    quote, _ = sample
    fake, url = pccs
    claims = await verify_tdx(quote, None, TdxCollateralSource(pccs_url=url + suffix), PINNED)
    assert claims.platform == "tdx" and claims.tcb_status == "UpToDate" and claims.advisory_ids == ()
    assert claims.measurements["mr_td"].startswith("91eb2b44d141d4ec")
    assert fake.requests == EXPECTED_REQUESTS


async def test_pccs_collateral_is_still_checked_against_the_verifier_clock(
        sample: tuple[bytes, dict[str, str]], pccs: tuple[FakePccs, str]) -> None:
    quote, _ = sample
    fake, url = pccs
    with pytest.raises(AttestationFailed, match="TCB info is valid 2025-06-19 10:16 to 2025-07-19 10:16, not at 2035") as failed:
        await verify_tdx(quote, None, TdxCollateralSource(pccs_url=url), PINNED + 10 * 365 * 86400)
    assert failed.value.code == "collateral_expired"
    assert fake.requests == EXPECTED_REQUESTS


async def test_unreachable_pccs_fails_closed(sample: tuple[bytes, dict[str, str]]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(AttestationFailed, match=r"TDX collateral could not be fetched from http://127\.0\.0\.1:\d+: "
                                                r"Failed to get collateral: error sending request for url \(http://"
                                                r"127\.0\.0\.1:\d+/sgx/certification/v4/pckcrl\?ca=platform"):
        await verify_tdx(sample[0], None, TdxCollateralSource(pccs_url=url), PINNED)


async def test_a_pccs_that_never_answers_fails_closed_in_time(sample: tuple[bytes, dict[str, str]]) -> None:
    import asyncio

    done = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # takes the request, answers nothing
        await done.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(AttestationFailed, match=r"PCCS at http://127\.0\.0\.1:\d+ did not answer within 0\.3 s"):
            await verify_tdx(sample[0], None,
                             TdxCollateralSource(pccs_url=f"http://127.0.0.1:{port}", pccs_timeout=0.3), PINNED)
    finally:
        done.set()
        server.close()
        await server.wait_closed()


def _status(status: int, on: str | None = None) -> Tamper:
    def tamper(path: str, response: Response) -> Response:
        return Response("nope", status) if on is None or path.endswith(on) else response
    return tamper


def _body(body: bytes, on: str) -> Tamper:
    def tamper(path: str, response: Response) -> Response:
        if not path.endswith(on):
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return Response(body, response.status_code, headers=headers)
    return tamper


def _no_header(name: str) -> Tamper:
    def tamper(path: str, response: Response) -> Response:
        if name.lower() in response.headers:
            del response.headers[name]
        return response
    return tamper


@pytest.mark.parametrize(("tamper", "message", "requested"), [
    pytest.param(_status(404), r"Failed to fetch http://127\.0\.0\.1:\d+/sgx/certification/v4/pckcrl\?ca=platform"
                 r"&encoding=der: HTTP 404", 1, id="404-everywhere"),
    pytest.param(_status(503, "/tcb"), r"/tdx/certification/v4/tcb\?fmspc=B0C06F000000&update=standard: HTTP 503", 2,
                 id="503-on-tcb"),
    pytest.param(_status(404, "/qe/identity"), r"/tdx/certification/v4/qe/identity\?update=standard: HTTP 404", 3,
                 id="404-on-qe-identity"),
    pytest.param(_body(b"<html>gateway says hi</html>", "/tcb"), "TCB Info should be valid JSON", 4,
                 id="html-for-tcb-info"),
    pytest.param(_body(b'{"enclaveIdentity": {}, "signature": "not hex"}', "/qe/identity"),
                 "QE Identity signature must be valid hex", 4, id="garbage-qe-identity-signature"),
    pytest.param(_body(b"\xff\xfe garbage", "/rootcacrl"), "Failed to convert hex-encoded CRL to string", 4,
                 id="binary-garbage-root-ca-crl"),
    pytest.param(_body(b"zz not hex", "/rootcacrl"), "Failed to decode hex-encoded root CA CRL", 4,
                 id="text-garbage-root-ca-crl"),
    pytest.param(_no_header("SGX-PCK-CRL-Issuer-Chain"), "Missing SGX-PCK-CRL-Issuer-Chain", 1,
                 id="no-pck-crl-issuer-chain"),
    pytest.param(_no_header("TCB-Info-Issuer-Chain"), "Missing TCB-Info-Issuer-Chain", 2,
                 id="no-tcb-info-issuer-chain"),
])
async def test_pccs_error_or_garbage_fails_closed_with_a_named_reason(
        sample: tuple[bytes, dict[str, str]], pccs: tuple[FakePccs, str], tamper: Tamper, message: str,
        requested: int) -> None:
    fake, url = pccs
    fake.tamper = tamper
    with pytest.raises(AttestationFailed, match=rf"TDX collateral could not be fetched from {re.escape(url)}: .*{message}"):
        await verify_tdx(sample[0], None, TdxCollateralSource(pccs_url=url), PINNED)
    assert fake.requests == EXPECTED_REQUESTS[:requested]  # it stops at the first bad answer


@pytest.mark.parametrize("tamper", [
    pytest.param(_body(b"\x30\x03\x02\x01\x00", "/pckcrl"), id="garbage-der-pck-crl"),
    pytest.param(_body(b"00" * 64, "/rootcacrl"), id="garbage-hex-root-ca-crl"),
])
async def test_pccs_garbage_that_parses_as_transport_is_refused_as_malformed_collateral(
        sample: tuple[bytes, dict[str, str]], pccs: tuple[FakePccs, str], tamper: Tamper) -> None:
    fake, url = pccs
    fake.tamper = tamper
    with pytest.raises(AttestationFailed, match=r"TDX collateral is malformed: error parsing asn1 value") as failed:
        await verify_tdx(sample[0], None, TdxCollateralSource(pccs_url=url), PINNED)
    assert failed.value.code == "collateral_malformed"
    assert fake.requests == EXPECTED_REQUESTS


async def test_pccs_tcb_info_it_did_not_get_from_intel_is_refused(
        sample: tuple[bytes, dict[str, str]], pccs: tuple[FakePccs, str]) -> None:
    fake, url = pccs
    tcb = json.loads(fake.collateral["tcb_info"])
    tcb["nextUpdate"] = "2035-07-19T10:16:03Z"  # a PCCS stretching stale collateral: not the bytes Intel signed
    fake.collateral = {**fake.collateral, "tcb_info": json.dumps(tcb, separators=(",", ":"))}
    with pytest.raises(AttestationFailed, match=r"TDX quote does not verify: .*Signature is invalid for tcb_info") \
            as failed:
        await verify_tdx(sample[0], None, TdxCollateralSource(pccs_url=url), PINNED)
    assert failed.value.code == "quote_invalid"
    assert fake.requests == EXPECTED_REQUESTS
