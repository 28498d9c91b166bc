"""How a small language model sees a text, token by token: the statistics AI-content detection runs on.

For each position the model is shown the text's own tokens before it (teacher forcing) and asked for its
``top`` most likely next tokens; the features are the mean log-probability of the token that actually
follows, how often it was the model's first choice, and the mean entropy of the model's top choices.
Machine text is what such a model finds likely; people surprise it more.

All model calls of AI-content detection live here, behind :class:`TokenScorer`, so they can move onto the
shared llama.cpp engine's tokenizer and next-token API (a token-id prompt through llama.cpp's completions
with ``n_probs``; ``/tokenize`` on llama.cpp's loopback HTTP listener, which xllamacpp opens when given a
port) without touching the detector. :class:`LlamaCppTokenScorer` loads the model itself in the meantime.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import secrets
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from veilnet.errors import InvalidRequest, UpstreamError
from veilnet.models.catalog import model_path
from veilnet.models.llamaserver import start_server

__all__ = ["LlamaCppTokenScorer", "TextFeatures", "TokenScorer", "text_features"]


@runtime_checkable
class TokenScorer(Protocol):
    """A model's tokenizer and its next-token distribution after a sequence of token ids."""

    async def tokenize(self, text: str) -> list[int]: ...

    async def next_tokens(self, token_ids: Sequence[int], top: int) -> list[tuple[int, float]]:
        """The ``top`` most likely next tokens after ``token_ids``: (id, log-probability), best first."""
        ...

    async def next_tokens_along(self, token_ids: Sequence[int], top: int) -> list[list[tuple[int, float]]]:
        """:meth:`next_tokens` after each prefix ``token_ids[:i]``, i = 1 .. len - 1, in order (one call, so
        an implementation may run them in one go)."""
        ...


@dataclass(frozen=True)
class TextFeatures:
    mean_logprob: float  # of the token that follows, under the model (a token outside its top: below them)
    argmax_share: float  # positions where the following token was the model's first choice
    mean_entropy: float  # of the model's top choices, renormalised, in nats
    positions: int

    def vector(self) -> tuple[float, float, float]:
        return (self.mean_logprob, self.argmax_share, self.mean_entropy)


async def text_features(scorer: TokenScorer, text: str, *, positions: int = 64, top: int = 20) -> TextFeatures:
    """Statistics of the first ``positions`` next-token predictions in ``text`` (positions in order, so the
    model's prompt cache makes each one cost about one token)."""
    ids = await scorer.tokenize(text)
    if len(ids) < 2:
        raise InvalidRequest("a text is too short to score (fewer than two tokens)", param="input")
    ids = ids[: positions + 1]
    logprobs, firsts, entropies = [], 0, []
    for index, ranked in enumerate(await scorer.next_tokens_along(ids, top), start=1):
        if not ranked:
            raise UpstreamError("the model gave no next tokens")
        found = dict(ranked)
        # A token outside the top choices is less likely than all of them: one nat below the last, a floor.
        logprobs.append(found.get(ids[index], ranked[-1][1] - 1.0))
        firsts += ranked[0][0] == ids[index]
        weights = [math.exp(lp) for _, lp in ranked]
        total = sum(weights)
        entropies.append(-sum(w / total * math.log(w / total) for w in weights if w > 0))
    count = len(logprobs)
    return TextFeatures(sum(logprobs) / count, firsts / count, sum(entropies) / count, count)


class LlamaCppTokenScorer:
    """One GGUF model (SmolLM2 by default) loaded with a small context just for scoring. An async context
    manager. Calls are serialised: the model has one slot, and its prompt cache serves growing prefixes of
    one text best when no other text interleaves. One thread by default: each call decodes a single token,
    which a second thread barely speeds up, and llama.cpp's spinning threads on a busy machine made the same
    64 positions ~10x slower with two (6 s against 60 s, measured with the CPU shared)."""

    def __init__(self, model: str = "SmolLM2-135M-Instruct", *, cache_dir: Path, context_length: int = 512,
                 threads: int = 1) -> None:
        self._model = model
        self._cache_dir = cache_dir
        self._context = context_length
        self._threads = threads
        self._key = secrets.token_urlsafe(24)  # the loopback listener answers only holders of this key
        self._server: Any = None
        self._url: urllib.parse.SplitResult | None = None
        self._lock = threading.Lock()

    async def __aenter__(self) -> LlamaCppTokenScorer:
        await asyncio.to_thread(self.load)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server = None  # xllamacpp frees the model (and its listener) when the Server is collected

    def load(self) -> None:
        import xllamacpp

        if self._server is not None:
            return
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path(self._model, self._cache_dir))
        params.n_ctx = self._context
        params.n_parallel = 1
        params.cpuparams.n_threads = self._threads
        params.cpuparams_batch.n_threads = self._threads
        params.warmup = False
        params.verbosity = -1
        params.port = 0  # any free loopback port, for /tokenize (xllamacpp has no in-process tokenizer)
        params.api_keys = [self._key]
        self._server = start_server(params)
        self._url = urllib.parse.urlsplit(str(self._server.listening_address))

    @property
    def model(self) -> str:
        return self._model

    def _tokenize(self, text: str) -> list[int]:
        if self._url is None:
            raise UpstreamError("the token scorer is not loaded (use it as an async context manager)")
        connection = http.client.HTTPConnection(self._url.hostname or "127.0.0.1", self._url.port, timeout=30)
        try:
            connection.request("POST", "/tokenize", body=json.dumps({"content": text, "add_special": False}),
                               headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"})
            response = connection.getresponse()
            status, data = response.status, json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise UpstreamError(f"llama.cpp /tokenize failed: {exc}") from exc
        finally:
            connection.close()
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if status != 200 or not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise UpstreamError(f"llama.cpp /tokenize answered HTTP {status} without token ids")
        return list(tokens)

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(self._tokenize, text)

    def _next(self, token_ids: list[int], top: int) -> list[tuple[int, float]]:
        with self._lock:
            result = self._server.handle_completions({
                "prompt": token_ids, "max_tokens": 1, "n_probs": top, "temperature": 0.0, "cache_prompt": True,
            })
        try:
            entries = result["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            return [(int(entry["id"]), float(entry["logprob"])) for entry in entries]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UpstreamError(f"llama.cpp gave no next-token log probabilities: {result!r:.200}") from exc

    def _check(self, token_ids: Sequence[int]) -> None:
        if self._server is None:
            raise UpstreamError("the token scorer is not loaded (use it as an async context manager)")
        if len(token_ids) >= self._context:
            raise InvalidRequest(f"{len(token_ids)} tokens do not fit the scorer's context of {self._context}")

    async def next_tokens(self, token_ids: Sequence[int], top: int) -> list[tuple[int, float]]:
        self._check(token_ids)
        return await asyncio.to_thread(self._next, list(token_ids), top)

    async def next_tokens_along(self, token_ids: Sequence[int], top: int) -> list[list[tuple[int, float]]]:
        self._check(token_ids)
        ids = list(token_ids)
        # One worker thread walks the whole text: a thread hop per position costs as much as the position.
        return await asyncio.to_thread(lambda: [self._next(ids[:i], top) for i in range(1, len(ids))])
