"""Any OpenAI-compatible upstream (vLLM, SGLang, llama.cpp server, Ollama) over HTTP.

Requests go through veilnet's :class:`~veilnet.relay.RelayClient`, whose cost per streamed chunk is a fraction
of aiohttp's (and httpx's pool collapses under many concurrent streams, encode/httpx#3215). Upstream failures
become :class:`~veilnet.errors.UpstreamError`; an upstream that dies mid-stream ends the stream with that error
rather than a silent truncation.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic_core import to_json

from veilnet.errors import InvalidRequest, NotFound, UpstreamError, UpstreamTimeout
from veilnet.models.engine import ModelInfo, check_embedding_models
from veilnet.models.limits import Admission
from veilnet.relay import RelayClient, RelayError, RelayResponse

__all__ = ["OpenAIUpstreamEngine"]


class OpenAIUpstreamEngine:
    """Forwards requests to ``base_url`` (ending in ``/v1``), renaming models through ``model_map``."""

    def __init__(
        self,
        base_url: str,
        models: list[str],
        *,
        api_key: str | None = None,
        model_map: Mapping[str, str] | None = None,
        context_length: int = 8192,
        embedding_models: list[str] | None = None,
        concurrency: int = 256,
        queue: int = 256,
        timeout: float = 300.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._names = list(models)
        self._map = dict(model_map or {})
        self._context = context_length
        self._embedding = set(check_embedding_models(self._names, embedding_models))
        self._headers = {"Content-Type": "application/json",
                         **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self._admission = Admission(concurrency, queue)
        self._timeout = timeout
        self._client: RelayClient | None = None

    async def __aenter__(self) -> OpenAIUpstreamEngine:
        self._client = RelayClient(connect_timeout=10)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(name, self._context, embeddings=name in self._embedding) for name in self._names]

    def _prepare(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = str(request.get("model"))
        if name not in self._names:
            raise NotFound(f"model {name!r} is not served here; served: {', '.join(self._names)}")
        body = {k: v for k, v in request.items() if v is not None}
        body["model"] = self._map.get(name, name)
        return name, body

    async def _send(self, path: str, body: dict[str, Any]) -> RelayResponse:
        if self._client is None:
            raise UpstreamError("upstream engine is not open")
        return await self._client.post(self._base + path, to_json(body), self._headers, timeout=self._timeout)

    async def _post(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        name, body = self._prepare(request)
        async with self._admission.slot():
            try:
                async with await self._send(path, body) as response:
                    data = await response.json()
                    self._raise_for(response.status, data)
            except TimeoutError as exc:
                raise UpstreamTimeout(f"upstream {self._base} timed out") from exc
            except (RelayError, ValueError) as exc:  # ValueError: not JSON, or not even UTF-8
                raise UpstreamError(f"upstream {self._base} failed: {exc}") from exc
        if not isinstance(data, dict):
            raise UpstreamError("upstream answered with a non-object")
        data["model"] = name
        return data

    @staticmethod
    def _raise_for(status: int, data: Any) -> None:
        if status < 400:
            return
        message = data.get("error", {}).get("message") if isinstance(data, dict) and isinstance(data.get("error"), dict) else None
        message = message or f"upstream answered HTTP {status}"
        if status in (400, 422):
            raise InvalidRequest(f"upstream refused the request: {message}")
        if status == 404:
            raise NotFound(f"upstream: {message}")
        raise UpstreamError(f"upstream HTTP {status}: {message}")

    @contextlib.asynccontextmanager
    async def _open_stream(self, path: str, request: dict[str, Any]) -> AsyncIterator[RelayResponse]:
        """POST a streaming request inside an admission slot; library errors become UpstreamError."""
        _, body = self._prepare(request)
        body["stream"] = True
        body.setdefault("stream_options", {"include_usage": True})
        async with self._admission.slot():
            try:
                async with await self._send(path, body) as response:
                    if response.status >= 400:
                        self._raise_for(response.status, await response.json())
                    yield response
            except TimeoutError as exc:
                raise UpstreamTimeout(f"upstream {self._base} timed out mid-stream") from exc
            except (RelayError, ValueError) as exc:  # ValueError: not JSON, or not even UTF-8
                raise UpstreamError(f"upstream {self._base} failed mid-stream: {exc}") from exc

    async def _stream(self, path: str, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        name = str(request.get("model"))
        async with self._open_stream(path, request) as response:
            async for block in response.blocks(whole_lines=True):
                for line in block.splitlines():
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        return
                    chunk = json.loads(payload)
                    if isinstance(chunk, dict):
                        chunk["model"] = name
                        yield chunk
            raise UpstreamError("upstream stream ended before [DONE]")

    def can_relay_raw(self, model: str) -> bool:
        """True when the upstream's stream can be passed through byte for byte (no model rename needed)."""
        return model in self._names and self._map.get(model, model) == model

    async def relay_raw(self, path: str, request: dict[str, Any]) -> AsyncIterator[bytes]:
        """The upstream's SSE bytes as they arrive, for a bare relay. The caller checks for ``[DONE]``."""
        async with self._open_stream(path, request) as response:
            async for data in response.blocks():
                yield data

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._post("/chat/completions", request)

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/chat/completions", request)

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._post("/completions", request)

    def completion_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/completions", request)

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("model") not in self._embedding:
            raise NotFound(f"model {request.get('model')!r} has no embeddings on this miner")
        return await self._post("/embeddings", request)
