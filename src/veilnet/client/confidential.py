"""An OpenAI-compatible client for confidential requests through a veilnet gateway.

For each model it asks the gateway which miners are attested, challenges one itself with a fresh nonce
(relayed by the gateway), verifies the evidence locally under *its own* policy and pinned keys, seals the
request to the attested key, and opens the answer frame by frame, checking the enclave's usage receipt.
The gateway sees only ciphertext. Attestation is verified once per miner and reused until it expires.
Anything that does not verify is refused: there is no plaintext fallback. A request the chosen enclave could
not serve (the gateway answers that it timed out, failed or was overloaded: 408, 502, 503, 504) is sealed
again to the next attested miner, up to ``FAILOVER_MINERS`` miners in all, and the next requests keep the
one that answered.

    async with ConfidentialClient("https://gateway.example/v1", api_key, verifier) as client:
        answer = await client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=[...])
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

import aiohttp

from veilnet.confidential.errors import AttestationFailed, PrivacyRestricted
from veilnet.confidential.exchange import SealedExchange
from veilnet.confidential.sessions import AttestedMiner, AttestedSessions
from veilnet.confidential.verifiers import EvidenceVerifier
from veilnet.errors import InvalidRequest, UpstreamError, VeilnetError
from veilnet.protocol import paths, sse
from veilnet.protocol.confidential import ENCRYPTION_SCHEME, ConfidentialRelayRequest, Evidence
from veilnet.protocol.errors import error_from_answer
from veilnet.protocol.headers import ENCRYPTION_HEADER, GENERATION_HEADER
from veilnet.protocol.paths import Endpoint

__all__ = ["FAILOVER_MINERS", "ConfidentialClient", "error_from_response"]

FAILOVER_MINERS = 3  # attested miners one request is sealed to, one after another, before its error stands
UNSERVED_STATUSES = frozenset({408, 502, 503, 504})  # the gateway's answers for a miner that did not serve


class _Unserved(Exception):
    """The gateway answered that the enclave did not serve the request (``error``, one of UNSERVED_STATUSES)."""

    def __init__(self, error: VeilnetError) -> None:
        super().__init__(error.message)
        self.error = error


def error_from_response(status: int, body: bytes, retry_after: str | None = None) -> VeilnetError:
    """The gateway's error answer as the veilnet error it stands for (:mod:`veilnet.protocol.errors`, the
    registry the gateway answered with): class, code, message, parameter and Retry-After kept."""
    return error_from_answer(status, body, retry_after=retry_after, default_message=f"gateway answered HTTP {status}")


@contextlib.contextmanager
def _gateway_errors(base_url: str) -> Iterator[None]:
    """aiohttp failures talking to the gateway, as veilnet's UpstreamError (the cause kept)."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(f"gateway {base_url} failed: {exc or type(exc).__name__}") from exc


class _Create:
    def __init__(self, client: ConfidentialClient, endpoint: Endpoint) -> None:
        self._client, self._endpoint = client, endpoint

    async def create(self, **request: Any) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        return await self._client.create(self._endpoint, request)


class _Chat:
    def __init__(self, client: ConfidentialClient) -> None:
        self.completions = _Create(client, "chat.completions")


class ConfidentialClient:
    """``base_url``: the gateway's ``…/v1``. ``verifier``: this client's own policy and pinned anchors."""

    def __init__(self, base_url: str, api_key: str | None, verifier: EvidenceVerifier, *,
                 http: aiohttp.ClientSession | None = None, timeout: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.sessions = AttestedSessions(verifier)
        self._http = http
        self._owns_http = http is None
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._chosen: dict[str, str] = {}  # model -> hotkey of the attested miner in use
        self.chat = _Chat(self)
        self.completions = _Create(self, "completions")

    async def __aenter__(self) -> ConfidentialClient:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("use ConfidentialClient as 'async with' (or pass http=)")
        return self._http

    def _headers(self, api_key: str | None) -> dict[str, str]:
        key = api_key or self.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def get_json(self, path: str, api_key: str | None, **params: str) -> Any:
        with _gateway_errors(self.base_url):
            async with self.http.get(f"{self.base_url}{path}", params=params, headers=self._headers(api_key),
                                     timeout=self._timeout) as response:
                body = await response.read()
        if response.status != 200:
            raise error_from_response(response.status, body, response.headers.get("Retry-After"))
        try:
            return json.loads(body)
        except ValueError as exc:
            raise UpstreamError(f"gateway answered {path} with something that is not JSON") from exc

    async def _evidence(self, hotkey: str, nonce: bytes, api_key: str | None) -> Evidence:
        with _gateway_errors(self.base_url):
            async with self.http.post(f"{self.base_url}{paths.under_v1(paths.CONFIDENTIAL_ATTESTATION)}",
                                      json={"miner": hotkey, "nonce": nonce.hex()}, headers=self._headers(api_key),
                                      timeout=self._timeout) as response:
                body = await response.read()
        if response.status != 200:
            raise error_from_response(response.status, body, response.headers.get("Retry-After"))
        try:
            return Evidence.model_validate_json(body)
        except ValueError as exc:
            raise AttestationFailed(f"evidence for {hotkey} is malformed: {exc}") from exc

    async def attested_miner(self, model: str, *, api_key: str | None = None,
                             avoid: frozenset[str] = frozenset()) -> AttestedMiner:
        """A miner serving ``model`` whose attestation this client verified (the gateway's order is kept),
        none of ``avoid``. The choice is kept while its attestation is fresh, so a session costs one listing
        and one challenge."""
        chosen = self._chosen.get(model)
        if (chosen is not None and chosen not in avoid and (miner := self.sessions.get(chosen)) is not None
                and model in miner.claims.models):
            return miner
        listed = await self.get_json(paths.under_v1(paths.CONFIDENTIAL_MINERS), api_key, model=model)
        reasons = []
        for entry in listed.get("data", []):
            hotkey = str(entry.get("miner"))
            if hotkey in avoid:
                continue
            try:
                miner = await self.sessions.ensure(
                    hotkey, lambda nonce, h=hotkey: self._evidence(h, nonce, api_key), model=model)  # type: ignore[misc]
                self._chosen[model] = hotkey
                return miner
            except AttestationFailed as exc:
                reasons.append(f"{hotkey[:8]}…: {exc.message}")
        if reasons:
            raise AttestationFailed(f"no miner serving {model!r} passed this client's attestation checks: "
                                    + "; ".join(reasons))
        raise PrivacyRestricted(f"no attested miner serves {model!r} at this gateway")

    async def create(self, endpoint: Endpoint, request: dict[str, Any], *,
                     api_key: str | None = None) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        """Run one OpenAI request sealed end to end: a response dict, or an async iterator of chunks."""
        lines = await self.open(endpoint, request, api_key=api_key)
        if isinstance(lines, dict):
            return lines

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            async for line in lines:
                if line.startswith(sse.JSON_DATA):
                    yield json.loads(line[len(sse.DATA):])

        return chunks()

    async def open(self, endpoint: Endpoint, request: dict[str, Any], *,
                   api_key: str | None = None) -> dict[str, Any] | AsyncIterator[bytes]:
        """Like :meth:`create`, but a stream comes back as plaintext SSE lines (what the proxy relays)."""
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model is required", param="model")
        tried: list[str] = []
        error: VeilnetError | None = None
        while len(tried) < FAILOVER_MINERS:
            try:
                miner = await self.attested_miner(model, api_key=api_key, avoid=frozenset(tried))
            except (PrivacyRestricted, AttestationFailed):
                if error is None:
                    raise
                break  # no other attested miner: the last one's error stands
            try:
                return await self._open_at(miner, endpoint, request, api_key)
            except _Unserved as unserved:  # that enclave could not serve it: the next one may
                error = unserved.error
                tried.append(miner.hotkey)
                if self._chosen.get(model) == miner.hotkey:
                    del self._chosen[model]
        assert error is not None
        raise error

    async def _open_at(self, miner: AttestedMiner, endpoint: Endpoint, request: dict[str, Any],
                       api_key: str | None) -> dict[str, Any] | AsyncIterator[bytes]:
        model = request["model"]
        exchange = SealedExchange(miner, request, endpoint)
        body = ConfidentialRelayRequest(miner=miner.hotkey, sealed=exchange.sealed).model_dump_json().encode()
        headers = {**self._headers(api_key), "Content-Type": "application/json", ENCRYPTION_HEADER: ENCRYPTION_SCHEME}
        with _gateway_errors(self.base_url):
            response = await self.http.post(f"{self.base_url}{paths.under_v1(paths.ENDPOINT_PATHS[endpoint])}",
                                            data=body, headers=headers, timeout=self._timeout)
            if response.status != 200:
                try:
                    error = error_from_response(response.status, await response.read(),
                                                response.headers.get("Retry-After"))
                finally:
                    response.release()
                if error.code in ("privacy_restricted", "stale_keyset") or isinstance(error, AttestationFailed):
                    self._chosen.pop(model, None)  # the gateway no longer routes to that enclave: choose again
                    self.sessions.forget(miner.hotkey)
                if response.status in UNSERVED_STATUSES:
                    raise _Unserved(error)
                raise error
        try:
            exchange.check_encrypted(response.headers)
        except VeilnetError:
            response.release()
            raise
        generation = response.headers.get(GENERATION_HEADER)  # the gateway's id: the answer carries it too
        if not exchange.stream:
            try:
                with _gateway_errors(self.base_url):
                    data = exchange.open_response(await response.read())
            finally:
                response.release()
            if generation is not None and "choices" in data:
                data["id"] = generation
            data["veilnet"] = _provenance(miner, exchange)
            return data
        return self._stream(response, exchange, sse.ChunkIds(generation) if generation is not None else None)

    async def _stream(self, response: aiohttp.ClientResponse, exchange: SealedExchange,
                      ids: sse.ChunkIds | None) -> AsyncIterator[bytes]:
        try:
            with _gateway_errors(self.base_url):
                async for line in response.content:
                    if line.startswith(sse.DONE_MARK):
                        exchange.finish()  # final frame and receipt both arrived and verified
                        yield sse.DONE
                        return
                    plain = exchange.open_line(line)
                    if plain is not None:
                        event = sse.event(plain)
                        yield ids(event) if ids is not None else event
            exchange.finish()  # the stream ended without [DONE]: truncated unless the final frame came
        finally:
            response.release()


def _provenance(miner: AttestedMiner, exchange: SealedExchange) -> dict[str, Any]:
    receipt = exchange.receipt
    return {"miner": miner.hotkey, "platform": miner.claims.platform, "simulated": miner.claims.simulated,
            "policy_id": miner.claims.policy_id,
            "receipt": receipt.model_dump(mode="json") if receipt is not None else None}
