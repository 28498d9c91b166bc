"""A model's own tokenizer and chat template: count a prompt's tokens, render a chat, split an answer into tokens.

Validators recount usage and re-score answers token by token; the gateway bills from its own count and
refuses prompts longer than the context. All need exactly what the model's server does, so the tokenizer
is the model's: llama.cpp's ``/tokenize`` and ``/apply-template`` on a server loaded from the same GGUF.
xllamacpp runs llama.cpp's server in process but exposes no tokenizer call, so :class:`LlamaCppTokenizer`
reaches that server on loopback (the port xllamacpp opens when asked, guarded by a random API key).
Re-implementing BPE and the Jinja template in Python instead would drift from llama.cpp in exactly the
corner cases (pre-tokenizer splits, byte fallback, template whitespace) verification must get right.

:func:`open_llamacpp_tokenizer` loads a model just for this (a 64-token context, one thread, ~160 MiB for
SmolLM2); :class:`~veilnet.models.llamacpp.LlamaCppEngine` gives the tokenizer of a model it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from veilnet.errors import NotFound, UpstreamError
from veilnet.models.llamaserver import start_server

__all__ = [
    "END_OF_GENERATION_NAMES",
    "LlamaCppTokenizer",
    "Token",
    "Tokenizer",
    "open_llamacpp_tokenizer",
]

#: Control tokens that end a generation in the chat templates veilnet serves (llama.cpp's end-of-generation
#: set: EOS, EOT and the template's turn end). Those the model's vocabulary has as one control token count.
END_OF_GENERATION_NAMES = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>", "<|end|>", "<eos>")


@dataclass(frozen=True)
class Token:
    """One token: its id and the bytes it stands for (empty for control tokens)."""

    id: int
    bytes: bytes


@runtime_checkable
class Tokenizer(Protocol):
    """A model's tokenizer and chat template."""

    @property
    def model(self) -> str: ...

    @property
    def end_of_generation(self) -> frozenset[int]:
        """The token ids that end a generation (``finish_reason: "stop"`` without a stop sequence)."""
        ...

    @property
    def eos(self) -> int:
        """The end-of-sequence token the chat template ends an assistant turn with (among those above)."""
        ...

    @property
    def vocab_size(self) -> int: ...

    async def chat_prompt(self, messages: Sequence[Mapping[str, Any]], *,
                          tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        """The token ids the model reads for ``messages`` (and ``tools``, as the template shows them): the
        rendered chat template, generation prompt included, with the model's own special tokens (what
        llama.cpp counts as ``prompt_tokens``)."""
        ...

    async def text_tokens(self, text: str) -> list[Token]:
        """``text`` as plain text (no control tokens parsed, none added), token by token."""
        ...

    def text_ids_blocking(self, text: str) -> list[int]:
        """``text``'s token ids as :meth:`text_tokens` gives them, blocking the calling thread (for a library
        that tokenises from inside a synchronous call: llguidance tokenising a grammar's forced text)."""
        ...


def _piece_bytes(piece: Any) -> bytes:
    """llama.cpp gives a piece as text, or as a list of byte values when it is not valid UTF-8 alone."""
    if isinstance(piece, str):
        return piece.encode()
    if isinstance(piece, list) and all(isinstance(b, int) and 0 <= b < 256 for b in piece):
        return bytes(piece)
    raise UpstreamError(f"llama.cpp /tokenize gave an unreadable piece {piece!r}")


class LlamaCppTokenizer:
    """The tokenizer of the llama.cpp server at ``base_url`` (xllamacpp's loopback listener). Each call is one
    short HTTP exchange in a worker thread, so the object holds no connection and no event loop: any task,
    on any loop, may use it. Build it with :meth:`connect`."""

    def __init__(self, model: str, base_url: str, api_key: str, *, end_of_generation: frozenset[int] = frozenset(),
                 eos: int = -1, vocab_size: int = 0) -> None:
        self._model = model
        self._url = urllib.parse.urlsplit(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._eog = end_of_generation
        self._eos = eos
        self._vocab = vocab_size

    @classmethod
    async def connect(cls, model: str, base_url: str, api_key: str) -> LlamaCppTokenizer:
        """The tokenizer at ``base_url``, its vocabulary size and end-of-generation tokens looked up."""
        probe = cls(model, base_url, api_key)
        found: dict[str, int] = {}
        props = await probe._request("GET", "/props")
        eos_name = props.get("eos_token")
        for name in {*END_OF_GENERATION_NAMES, *([eos_name] if isinstance(eos_name, str) else [])}:
            data = await probe._request("POST", "/tokenize", {"content": name, "parse_special": True,
                                                              "with_pieces": True})
            tokens = data.get("tokens")
            if isinstance(tokens, list) and len(tokens) == 1 and isinstance(tokens[0], dict):
                if tokens[0].get("piece") == name and isinstance(tokens[0].get("id"), int):
                    found[name] = int(tokens[0]["id"])
        if not isinstance(eos_name, str) or eos_name not in found:
            raise UpstreamError(f"model {model!r}: its end-of-sequence token {eos_name!r} is not one control token")
        try:
            vocab = int((await probe._request("GET", "/v1/models"))["data"][0]["meta"]["n_vocab"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UpstreamError(f"llama.cpp /v1/models gave no vocabulary size: {exc}") from exc
        return cls(model, base_url, api_key, end_of_generation=frozenset(found.values()), eos=found[eos_name],
                   vocab_size=vocab)

    @property
    def model(self) -> str:
        return self._model

    @property
    def end_of_generation(self) -> frozenset[int]:
        return self._eog

    @property
    def eos(self) -> int:
        return self._eos

    @property
    def vocab_size(self) -> int:
        return self._vocab

    def _exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self._url.hostname or "127.0.0.1", self._url.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=self._headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, body)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            payload = None if body is None else json.dumps(body).encode()
            status, raw = await asyncio.to_thread(self._exchange, method, path, payload)
            data = json.loads(raw)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise UpstreamError(f"llama.cpp {path} failed: {exc}") from exc
        if status != 200 or not isinstance(data, dict):
            raise UpstreamError(f"llama.cpp {path} answered HTTP {status}: {raw[:200]!r}")
        return data

    async def render_chat(self, messages: Sequence[Mapping[str, Any]], *,
                          tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        """``messages`` (and ``tools``) through the model's chat template, the assistant's generation prompt
        appended."""
        body: dict[str, Any] = {"messages": [dict(m) for m in messages]}
        if tools:
            body["tools"] = [dict(t) for t in tools]
        data = await self._post("/apply-template", body)
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise UpstreamError("llama.cpp /apply-template gave no prompt")
        return prompt

    async def chat_prompt(self, messages: Sequence[Mapping[str, Any]], *,
                          tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        rendered = await self.render_chat(messages, tools=tools)
        data = await self._post("/tokenize", {"content": rendered, "add_special": True, "parse_special": True})
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise UpstreamError("llama.cpp /tokenize gave no token ids")
        return list(tokens)

    async def text_tokens(self, text: str) -> list[Token]:
        if not text:
            return []
        data = await self._post("/tokenize", {"content": text, "add_special": False, "parse_special": False,
                                              "with_pieces": True})
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise UpstreamError("llama.cpp /tokenize gave no tokens")
        out = []
        for item in tokens:
            if not isinstance(item, dict) or not isinstance(item.get("id"), int):
                raise UpstreamError("llama.cpp /tokenize gave a token without an id")
            out.append(Token(int(item["id"]), _piece_bytes(item.get("piece"))))
        return out

    def text_ids_blocking(self, text: str) -> list[int]:
        if not text:
            return []
        body = json.dumps({"content": text, "add_special": False, "parse_special": False}).encode()
        try:
            status, raw = self._exchange("POST", "/tokenize", body)
            tokens = json.loads(raw).get("tokens") if status == 200 else None
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            raise UpstreamError(f"llama.cpp /tokenize failed: {exc}") from exc
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise UpstreamError(f"llama.cpp /tokenize answered HTTP {status} without token ids")
        return list(tokens)


def load_tokenizer_server(gguf: Path, *, threads: int = 1, context: int = 64) -> tuple[Any, str]:
    """A llama.cpp server for ``gguf`` listening on a loopback port (blocking): the server object (keep it
    referenced; collecting it frees the model) and the API key guarding its port."""
    import xllamacpp

    key = secrets.token_urlsafe(24)
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = context
    params.n_batch = params.n_ubatch = context
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cache_ram_mib = 0
    params.warmup = False
    params.verbosity = -1
    params.port = 0  # any free port; the server reports the one it took
    params.api_keys = [key]
    return start_server(params), key


@contextlib.asynccontextmanager
async def open_llamacpp_tokenizer(model: str, cache_dir: Path) -> AsyncIterator[LlamaCppTokenizer]:
    """The tokenizer of catalog model ``model``, loaded on its own with a tiny context (for a gateway that
    counts tokens without serving the model)."""
    from veilnet.models.catalog import MODELS, model_path

    if model not in MODELS:
        raise NotFound(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    server, key = await asyncio.to_thread(load_tokenizer_server, model_path(model, cache_dir))
    try:
        yield await LlamaCppTokenizer.connect(model, str(server.listening_address), key)
    finally:
        del server  # xllamacpp frees the model when the server is collected
