"""The gateway's OpenAI/OpenRouter-compatible ASGI app: thin routes over :mod:`veilnet.gateway.service`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from pydantic_core import to_json

from veilnet.confidential.errors import PrivacyRestricted, ReceiptInvalid, ResponseTampered, StaleKeyset
from veilnet.confidential.exchange import ReceiptWitness, SealedExchange
from veilnet.dashboard import DashboardSnapshot, dashboard_router
from veilnet.edge import (
    EdgeApp,
    document_json_bodies,
    error_body,
    install_error_handlers,
    parse_body,
    read_body,
)
from veilnet.errors import (
    ConfidentialError,
    InvalidRequest,
    Overloaded,
    RequestTimeout,
    UpstreamError,
    UpstreamTimeout,
    VeilnetError,
)
from veilnet.gateway.confidential import attested_for, describe, fetch_miner_evidence
from veilnet.gateway.routing import Candidate
from veilnet.gateway.service import (
    GatewayContext,
    authenticate_key,
    bearer_key,
    cost_usd,
    estimated_usage,
    new_generation_id,
    open_miner_request,
    requested_parameters,
    route,
)
from veilnet.protocol.confidential import (
    ENCRYPTION_SCHEME,
    AttestationRelayRequest,
    ConfidentialRelayRequest,
    SealedResponse,
    UsageReceipt,
)
from veilnet.protocol.headers import ENCRYPTION_HEADER, SIMULATED_HEADER
from veilnet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RoutingFields,
    encode_embeddings_base64,
)
from veilnet.protocol.sse import lines_of, rewrite_lines
from veilnet.relay import RelayError, RelayResponse
from veilnet.store.keys import ApiKey, UsageRow
from veilnet.streaming import EventStreamResponse, SettledResponse

__all__ = ["create_gateway_app"]

log = logging.getLogger(__name__)

KEEPALIVE_COMMENT = b": keep-alive\n\n"
ENDPOINTS: dict[str, Literal["chat.completions", "completions"]] = {
    "/v1/chat/completions": "chat.completions", "/v1/completions": "completions",
}
Attempt = tuple[str, Candidate, RelayResponse, "SealedExchange | None"]


class GatewayChatRequest(ChatCompletionRequest, RoutingFields):
    pass


class GatewayCompletionRequest(CompletionRequest, RoutingFields):
    pass


class GatewayEmbeddingRequest(EmbeddingRequest, RoutingFields):
    pass


def _seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (HTTP dates and garbage are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def create_gateway_app(
    ctx: GatewayContext, *, max_body_bytes: int = 4 * 1024 * 1024, keepalive_seconds: float = 2.0
) -> EdgeApp:
    """``keepalive_seconds``: a stream whose miner has not answered by then starts at once and carries an SSE
    comment (``: keep-alive``) every ``keepalive_seconds`` until the first chunk, as OpenRouter does."""
    app = EdgeApp(title="veilnet gateway", docs_url=None, redoc_url=None)
    install_error_handlers(app)

    build_snapshot = ctx.stats.snapshot_source(ctx.directory, ctx.breaker, ctx.netuid, ctx.scores)

    class _Source:
        async def snapshot(self) -> DashboardSnapshot:
            return await build_snapshot()

    app.include_router(dashboard_router(_Source()))

    def receipt_usage(receipt: UsageReceipt, candidate: Candidate) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": receipt.prompt_tokens, "completion_tokens": receipt.completion_tokens}
        usage["cost"] = cost_usd(usage, candidate)
        return usage

    async def record(key: ApiKey, generation: str, model: str, candidate: Candidate | None, usage: dict[str, Any],
                     started: float, status: str, error: str | None = None,
                     request: dict[str, Any] | None = None, response: dict[str, Any] | None = None) -> None:
        uid = ctx.directory.metagraph.uid_of(candidate.hotkey) if candidate and ctx.directory.metagraph else None
        if candidate is not None:
            ctx.stats.observe(candidate.hotkey, uid, time.perf_counter() - started, status == "ok",
                              int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        row = UsageRow(
            generation_id=generation, key_id=key.id, model=model,
            miner=candidate.hotkey if candidate else None,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cost_usd=float(usage.get("cost") or 0.0), latency_ms=(time.perf_counter() - started) * 1000,
            status=status, error=error,
        )
        ctx.keys.record(row)  # queued at once, so a client that disconnects cannot lose it
        if ctx.ratelimit is not None:
            ctx.ratelimit.add_tokens(key.id, row.prompt_tokens + row.completion_tokens)
        if ctx.organic is not None and candidate is not None and request is not None and ctx.organic.draw():
            ctx.organic.add(miner=candidate.hotkey, model=model, request=request, response=response,
                            latency_ms=row.latency_ms, status=status)  # written with others, in the background

    async def relay(request: Request, schema: Any, path: str) -> Response:
        started = time.perf_counter()
        key = await authenticate_key(ctx, request.headers.get("authorization"))
        body = await read_body(request, max_body_bytes)
        parsed = parse_body(schema, body)
        generation = new_generation_id()
        payload = parsed.model_dump(exclude_none=True, exclude={"provider", "models"})
        # miners answer embeddings as floats; base64 (the openai SDK's default) is encoded here
        wants_base64 = payload.get("encoding_format") == "base64"
        if wants_base64:
            payload["encoding_format"] = "float"
        models = [parsed.model, *[m for m in (parsed.models or []) if m != parsed.model]]
        failures: list[VeilnetError] = []
        requested = requested_parameters(payload)

        confidential = parsed.provider.confidential if parsed.provider is not None else "off"
        attestation_prefs = parsed.provider.attestation if parsed.provider is not None else None
        endpoint = ENDPOINTS.get(path)

        async def attempts() -> AsyncGenerator[Attempt, None]:
            """Each miner that answered 200, in routing order over the ``models`` fallback list. Attested miners
            of a confidential request get it sealed to their enclave (the exchange opens their answer)."""
            for model in models:
                payload["model"] = model
                try:
                    candidates = await route(ctx, model, parsed.provider, embeddings=path == "/v1/embeddings",
                                             requested=requested)
                except VeilnetError as exc:
                    failures.append(exc)
                    continue
                for candidate in candidates:
                    attested = (attested_for(ctx, candidate.hotkey, model, attestation_prefs)
                                if confidential != "off" and endpoint is not None else None)
                    exchange = SealedExchange(attested, payload, endpoint) if attested and endpoint else None
                    try:
                        response = await open_miner_request(
                            ctx, candidate, path, payload, sealed_body=exchange.body() if exchange else None)
                    except TimeoutError:
                        ctx.breaker.failure(candidate.hotkey)
                        failures.append(timed_out(candidate))
                        continue
                    except RelayError as exc:
                        ctx.breaker.failure(candidate.hotkey)
                        failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… unreachable: {exc}"))
                        continue
                    if response.status != 200:
                        retry_after = _seconds(response.headers.get("Retry-After")) if response.status == 429 else None
                        ctx.breaker.failure(candidate.hotkey, retry_after=retry_after)
                        failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… answered HTTP {response.status}"))
                        response.release()
                        continue
                    if exchange is not None:
                        try:
                            exchange.check_encrypted(response.headers)
                        except ConfidentialError as exc:
                            ctx.breaker.failure(candidate.hotkey)
                            failures.append(exc)
                            response.release()
                            continue
                    ctx.breaker.success(candidate.hotkey)
                    yield model, candidate, response, exchange

        async def give_up() -> VeilnetError:
            error = failures[-1] if failures else UpstreamError("no miner could serve the request")
            await record(key, generation, parsed.model, None, {}, started, "error", error.message)
            if failures and all(isinstance(f, UpstreamTimeout) for f in failures):
                return RequestTimeout(f"request timed out: {'; '.join(f.message for f in failures)}")
            if isinstance(error, UpstreamError | ResponseTampered | ReceiptInvalid):
                return Overloaded(f"no miner could serve the request: {error.message}", retry_after=2)
            return error

        headers = {"X-Generation-Id": generation}
        # provider.data_collection=deny or confidential: nothing of the request is sampled into the validator's organic stream
        deny = parsed.provider is not None and (parsed.provider.data_collection == "deny"
                                                or parsed.provider.confidential != "off")

        def sampled() -> dict[str, Any] | None:  # the request as sent to the miner that answered
            return None if deny else dict(payload)

        if getattr(parsed, "stream", False):
            found = attempts()
            first = asyncio.ensure_future(anext(found, None))
            done, _ = await asyncio.wait({first}, timeout=keepalive_seconds)
            if done:
                opened = first.result()
                await found.aclose()  # later candidates are not needed once one answered
                if opened is None:
                    raise await give_up()
                model, candidate, response, exchange = opened
                events = stream(response, key, generation, model, candidate, started, payload, sampled(), exchange)
            else:
                # the miner is slow to answer: start the stream and keep it alive with SSE comments
                events = stream_when_ready(first, found, give_up, key, generation, started, parsed.model, payload,
                                           sampled)
            return EventStreamResponse(events, headers={**headers, "Cache-Control": "no-cache"})

        async with contextlib.aclosing(attempts()) as tried:
            async for model, candidate, response, exchange in tried:
                try:
                    data = exchange.open_response(await response.read()) if exchange else await response.json()
                    if wants_base64 and isinstance(data, dict):
                        encode_embeddings_base64(data)
                except TimeoutError:
                    ctx.breaker.failure(candidate.hotkey)
                    failures.append(timed_out(candidate))
                    continue
                except (RelayError, ValueError) as exc:
                    ctx.breaker.failure(candidate.hotkey)
                    failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… sent an unreadable answer: {exc}"))
                    continue
                except ConfidentialError as exc:  # tampered frames or a bad receipt: never bill, try the next
                    ctx.breaker.failure(candidate.hotkey)
                    failures.append(exc)
                    continue
                finally:
                    response.release()
                if not isinstance(data, dict):
                    ctx.breaker.failure(candidate.hotkey)
                    failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… answered with a non-object"))
                    continue
                usage = data.setdefault("usage", {})
                if exchange is not None and exchange.receipt is not None:  # bill from the enclave's receipt
                    usage.update(prompt_tokens=exchange.receipt.prompt_tokens,
                                 completion_tokens=exchange.receipt.completion_tokens)
                    headers[SIMULATED_HEADER] = "true" if exchange.receipt.simulated else "false"
                usage["cost"] = cost_usd(usage, candidate)
                if "choices" in data:
                    data["id"] = generation
                await record(key, generation, model, candidate, usage, started, "ok", request=sampled(),
                             response=data)
                return JSONResponse(data, headers=headers)
        raise await give_up()

    async def stream_when_ready(
        first: asyncio.Future[Attempt | None],
        found: AsyncGenerator[Attempt, None],
        give_up: Callable[[], Awaitable[VeilnetError]],
        key: ApiKey, generation: str, started: float, model: str, payload: dict[str, Any],
        sampled: Callable[[], dict[str, Any] | None],
    ) -> AsyncGenerator[bytes, None]:
        try:
            while not first.done():
                yield KEEPALIVE_COMMENT
                await asyncio.wait({first}, timeout=keepalive_seconds)
            opened = first.result()
        except (asyncio.CancelledError, GeneratorExit):  # the client went away before any miner answered
            first.cancel()
            await record(key, generation, model, None, {}, started, "client_disconnected")
            raise
        await found.aclose()
        if opened is None:
            yield error_event(generation, model, await give_up())
            return
        answered, candidate, response, exchange = opened
        async with contextlib.aclosing(stream(response, key, generation, answered, candidate, started, payload, sampled(),
                                              exchange)) as relayed:
            async for line in relayed:
                yield line

    def timed_out(candidate: Candidate) -> UpstreamTimeout:
        return UpstreamTimeout(f"miner {candidate.hotkey[:8]}… did not answer within {ctx.request_timeout:g} s")

    def error_event(generation: str, model: str, error: VeilnetError) -> bytes:
        """OpenRouter's shape for an error after streaming began, then the end of the stream."""
        chunk = {"id": generation, "object": "chat.completion.chunk", "model": model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], **error_body(error)}
        return b"data: " + to_json(chunk) + b"\n\n" + b"data: [DONE]\n\n"

    async def stream(response: RelayResponse, key: ApiKey, generation: str, model: str,
                     candidate: Candidate, started: float, payload: dict[str, Any], request: dict[str, Any] | None,
                     exchange: SealedExchange | None = None) -> AsyncGenerator[bytes, None]:
        usage: dict[str, Any] = {}
        status = "ok"
        chunks = 0  # data lines relayed: what a client that leaves before the miner's usage line is billed from
        try:
            def plain_line(line: bytes) -> bytes:
                """A line worth a look: the miner's signature comment (for validators, not apps), the usage
                chunk (cost added) or an error (OpenRouter's shape for an error after streaming began)."""
                nonlocal usage, status
                if line.startswith(b": "):
                    return b""
                if not line.startswith(b"data: {"):
                    return line
                try:
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        usage = chunk["usage"] = dict(chunk["usage"])
                        usage["cost"] = cost_usd(usage, candidate)
                        return b"data: " + to_json(chunk) + b"\n"
                except (ValueError, TypeError) as exc:  # not JSON, or a usage that is not token counts
                    raise UpstreamError(f"miner {candidate.hotkey[:8]}… sent an unreadable chunk: {exc}") from exc
                if "error" not in chunk or "choices" in chunk:
                    return line
                status = "error"
                chunk = {"id": generation, "object": "chat.completion.chunk", "model": model,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], "error": chunk["error"]}
                return b"data: " + to_json(chunk) + b"\n"

            async for block in response.blocks(whole_lines=True):
                if exchange is None:
                    chunks += block.count(b"data: {")
                    block = rewrite_lines(block, (b'"usage"', b'"error"'), plain_line)
                    if block:
                        yield block
                    continue
                out: list[bytes] = []
                for line in lines_of(block):  # a stream the gateway sealed: open each frame, strictly in order
                    if line.startswith(b": "):
                        continue
                    if line.startswith(b"data: [DONE]"):
                        usage = receipt_usage(exchange.finish(), candidate)  # billed from the enclave's receipt
                        out.append(b"data: [DONE]\n\n")
                        continue
                    plain = exchange.open_line(line)
                    if plain is not None:
                        chunks += 1
                        out.append(plain_line(b"data: " + plain + b"\n") + b"\n")
                if out:
                    yield b"".join(out)
            if exchange is not None and exchange.receipt is None:
                exchange.finish()  # ended without its final frame and receipt: truncated, refused below
        except (RelayError, TimeoutError) as exc:
            status = "error"
            yield error_event(generation, model, UpstreamError(f"miner failed mid-stream: {exc}"))
        except UpstreamError as exc:  # the miner's stream broke its format
            status = "error"
            ctx.breaker.failure(candidate.hotkey)
            yield error_event(generation, model, exc)
        except ConfidentialError as exc:  # tampered, truncated or unreceipted: the app is told, nothing billed
            status, usage = "error", {}
            ctx.breaker.failure(candidate.hotkey)
            yield error_event(generation, model, exc)
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            status = "client_disconnected"
            raise
        finally:
            response.release()
            error = None
            if status == "client_disconnected" and not usage and chunks:  # leaving early is not free
                usage = estimated_usage(chunks, candidate, payload)
                error = "usage estimated: the client left before the miner's usage arrived"
            await record(key, generation, model, candidate, usage, started, status, error, request=request)

    async def relay_sealed(request: Request, path: str) -> Response:
        """A request the client sealed to an enclave it attested itself: forwarded as ciphertext the
        gateway cannot read; the gateway checks the miner's attestation and bills from its signed receipt."""
        started = time.perf_counter()
        key = await authenticate_key(ctx, request.headers.get("authorization"))
        if request.headers.get(ENCRYPTION_HEADER) != ENCRYPTION_SCHEME:
            raise InvalidRequest(f"{ENCRYPTION_HEADER} must be {ENCRYPTION_SCHEME}", param=ENCRYPTION_HEADER)
        body = await read_body(request, max_body_bytes)
        relayed: ConfidentialRelayRequest = parse_body(ConfidentialRelayRequest, body)
        sealed = relayed.sealed
        if sealed.endpoint != ENDPOINTS[path]:
            raise InvalidRequest(f"sealed request is for {sealed.endpoint}, sent to {path}", param="sealed.endpoint")
        attested = attested_for(ctx, relayed.miner, sealed.model, None)
        if attested is None:
            raise PrivacyRestricted(f"miner {relayed.miner} has no fresh verified attestation for {sealed.model!r} "
                                    "at this gateway")
        if attested.claims.keyset_digest != sealed.keyset_digest:
            raise StaleKeyset("the request is sealed to a keyset the miner no longer attests; fetch its "
                              "attestation again")
        candidate = next((c for c in ctx.directory.candidates(sealed.model, {}) if c.hotkey == relayed.miner), None)
        if candidate is None:
            raise PrivacyRestricted(f"miner {relayed.miner} does not serve {sealed.model!r}")
        if not ctx.breaker.allows(candidate.hotkey):
            raise Overloaded(f"miner {relayed.miner[:8]}… is cooling down after failures", retry_after=5)
        generation = new_generation_id()

        async def miner_timed_out() -> RequestTimeout:
            ctx.breaker.failure(candidate.hotkey)
            await record(key, generation, sealed.model, candidate, {}, started, "error", "miner timed out")
            return RequestTimeout(f"request timed out: {timed_out(candidate).message}")

        try:
            response = await open_miner_request(ctx, candidate, path, None,
                                                sealed_body=sealed.model_dump_json().encode())
        except TimeoutError as exc:
            raise await miner_timed_out() from exc
        except RelayError as exc:
            ctx.breaker.failure(candidate.hotkey)
            await record(key, generation, sealed.model, candidate, {}, started, "error", "miner unreachable")
            raise Overloaded(f"miner {relayed.miner[:8]}… unreachable: {exc}", retry_after=2) from exc
        headers = {"X-Generation-Id": generation, ENCRYPTION_HEADER: ENCRYPTION_SCHEME,
                   SIMULATED_HEADER: "true" if attested.claims.simulated else "false"}
        witness = ReceiptWitness(sealed, attested.keys)
        if response.status != 200:
            try:
                data = await response.json()
            except (RelayError, ValueError, TimeoutError):
                data = None
            finally:
                response.release()
            if response.status >= 500 or response.status == 429:  # a 4xx is the enclave refusing the request
                ctx.breaker.failure(candidate.hotkey)
            await record(key, generation, sealed.model, candidate, {}, started, "error", f"HTTP {response.status}")
            if 400 <= response.status < 500 and isinstance(data, dict) and "error" in data:
                return JSONResponse(data, status_code=response.status)  # the enclave's verdict on the request
            raise Overloaded(f"miner {relayed.miner[:8]}… answered HTTP {response.status}", retry_after=2)
        try:
            SealedExchange.check_encrypted(response.headers)
        except ConfidentialError:
            response.release()
            ctx.breaker.failure(candidate.hotkey)
            await record(key, generation, sealed.model, candidate, {}, started, "error", "plaintext downgrade")
            raise
        if not sealed.stream:
            try:
                raw = await response.read()
            except TimeoutError as exc:
                raise await miner_timed_out() from exc
            except RelayError as exc:
                ctx.breaker.failure(candidate.hotkey)
                await record(key, generation, sealed.model, candidate, {}, started, "error", str(exc)[:200])
                raise ResponseTampered(f"miner {relayed.miner[:8]}… broke off its sealed answer") from exc
            finally:
                response.release()

            async def settle() -> None:
                """Billed from the receipt once the answer is on its way: the client checks the same receipt
                and frames itself (and refuses them if they fail), so this check need not delay it."""
                try:
                    witness.feed_response(SealedResponse.model_validate_json(raw))
                    usage, status, error = receipt_usage(witness.finish(), candidate), "ok", None
                except (ValidationError, ConfidentialError) as exc:
                    ctx.breaker.failure(candidate.hotkey)
                    usage, status, error = {}, "error", f"unusable sealed answer: {str(exc)[:180]}"
                    log.warning("sealed answer failed the receipt check",
                                extra={"miner": candidate.hotkey, "reason": str(exc)[:200]})
                await record(key, generation, sealed.model, candidate, usage, started, status, error)

            return SettledResponse(raw, settle, media_type="application/json", headers=headers)

        async def events() -> AsyncIterator[bytes]:
            usage: dict[str, Any] = {}
            status = "ok"
            try:
                async for block in response.blocks(whole_lines=True):
                    out = [line for line in lines_of(block) if not line.startswith(b": ")]
                    for line in out:
                        witness.feed(line)
                    if out:
                        yield b"".join(out)
                usage = receipt_usage(witness.finish(), candidate)
            except (RelayError, TimeoutError, ConfidentialError) as exc:
                status = "error"
                ctx.breaker.failure(candidate.hotkey)
                log.warning("sealed stream failed", extra={"miner": candidate.hotkey, "reason": str(exc)[:200]})
                # the client's own checks refuse the stream (no final frame or receipt); nothing is billed
            except (asyncio.CancelledError, GeneratorExit):  # the client went away
                status = "client_disconnected"
                raise
            finally:
                response.release()
                error = None
                if status == "client_disconnected" and not usage and witness.frames:  # no receipt: frames relayed
                    usage = estimated_usage(witness.frames, candidate)
                    error = "usage estimated: the client left before the enclave's receipt arrived"
                await record(key, generation, sealed.model, candidate, usage, started, status, error)

        return EventStreamResponse(events(), headers={**headers, "Cache-Control": "no-cache"})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        if ENCRYPTION_HEADER in request.headers:
            return await relay_sealed(request, "/v1/chat/completions")
        return await relay(request, GatewayChatRequest, "/v1/chat/completions")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        if ENCRYPTION_HEADER in request.headers:
            return await relay_sealed(request, "/v1/completions")
        return await relay(request, GatewayCompletionRequest, "/v1/completions")

    @app.get("/v1/confidential/miners")
    async def confidential_miners(request: Request, model: str | None = None) -> dict[str, Any]:
        """Miners this gateway has verified attestation for (clients verify again, themselves)."""
        await authenticate_key(ctx, request.headers.get("authorization"))
        if ctx.attestations is None:
            return {"object": "list", "data": []}
        scores = await ctx.scores()
        offers = {(o.hotkey, o.model): o for o in ctx.directory.offers}
        data = []
        for miner in ctx.attestations.fresh():
            served = [m for m in miner.claims.models if (miner.hotkey, m) in offers and (model is None or m == model)]
            if not served:
                continue
            offer = offers[(miner.hotkey, served[0])]
            data.append(describe(miner, {"price": {"prompt": offer.price_input / 1e6,
                                                   "completion": offer.price_output / 1e6},
                                         "score": scores.get(miner.hotkey, 0.0)}))
        data.sort(key=lambda d: -float(d["score"]))
        return {"object": "list", "data": data}

    @app.post("/v1/confidential/attestation")
    async def confidential_attestation(request: Request) -> Response:
        """Relay a client's challenge to one miner and return its evidence untouched for the client to verify."""
        await authenticate_key(ctx, request.headers.get("authorization"))
        challenge: AttestationRelayRequest = parse_body(AttestationRelayRequest,
                                                       await read_body(request, max_body_bytes))
        evidence = await fetch_miner_evidence(ctx, challenge.miner, bytes.fromhex(challenge.nonce))
        return Response(evidence.model_dump_json().encode(), media_type="application/json")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await relay(request, GatewayEmbeddingRequest, "/v1/embeddings")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = []
        for model, offers in sorted(ctx.directory.models().items()):
            cheapest = min(offers, key=lambda o: o.price_input + o.price_output)
            data.append({
                "id": model, "object": "model", "owned_by": "veilnet",
                "context_length": max(o.context_length for o in offers),
                "pricing": {"prompt": cheapest.price_input / 1e6, "completion": cheapest.price_output / 1e6},
                "providers": len(offers),
            })
        return {"object": "list", "data": data}

    @app.get("/api/v1/key")
    async def key_info(request: Request) -> dict[str, Any]:
        """OpenRouter's key endpoint: credit (USD), the budget per period when the key has one, and rate
        limits, with this period's and this minute's use of them. A key out of credit or budget can still ask."""
        key = await bearer_key(ctx, request.headers.get("authorization"))
        limiter = ctx.ratelimit
        requests_used, tokens_used = limiter.counts(key.id) if limiter is not None else (0, 0)
        budget = None if key.budget_usd is None else {
            "limit": key.budget_usd, "reset": key.budget_reset, "usage": key.period_spent_usd,
            "remaining": key.budget_remaining_usd, "resets_at": key.budget_resets_at}
        return {"data": {
            "label": key.name, "limit": key.credit_usd, "usage": key.spent_usd,
            "limit_remaining": key.remaining_usd, "is_free_tier": False, "budget": budget,
            "rate_limit": {"requests": (limiter.rpm or None) if limiter else None,
                           "tokens": (limiter.tpm or None) if limiter else None, "interval": "1m"},
            "rate_limit_used": {"requests": requests_used, "tokens": tokens_used},
        }}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(ctx.stats.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "miners": len({o.hotkey for o in ctx.directory.offers}),
                "breakers": ctx.breaker.states()}

    # the request paths skip FastAPI's layers (EdgeApp); the routes above still define the OpenAPI document
    app.fast_routes.update({"/v1/chat/completions": chat, "/v1/completions": completions, "/v1/embeddings": embeddings})
    document_json_bodies(app, {
        "/v1/chat/completions": GatewayChatRequest, "/v1/completions": GatewayCompletionRequest,
        "/v1/embeddings": GatewayEmbeddingRequest, "/v1/confidential/attestation": AttestationRelayRequest,
    }, bearer=frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/v1/key",
                         "/v1/confidential/miners", "/v1/confidential/attestation"}))
    return app
