"""llama.cpp in this process through ``xllamacpp`` (llama.cpp's own server API, OpenAI-style logprobs).

Generation runs in worker threads so the event loop never blocks; streamed chunks cross back to the loop
through ``call_soon_threadsafe``, and a stream its reader closes early stops generating at its next token.
Admission control refuses work beyond the configured concurrency and queue instead of queueing without bound.
Embeddings have a lane of their own (one request at a time, its own queue): inputs are embedded one at a time
(see :meth:`LlamaCppEngine.embeddings`), so embeddings waiting their turn never hold a generation's slot.

As a validator's reference (``tokenizer=True``) the engine also gives each model's tokenizer (llama.cpp's
own, reached on a loopback port, see :mod:`veilnet.models.tokenizer`) and the top next tokens after a
sequence of token ids (:meth:`LlamaCppEngine.next_tokens`), and every token's bytes (:meth:`LlamaCppEngine.vocabulary`,
for replaying a structured answer's grammar).

Structured output is llama.cpp's: ``response_format`` ``json_object`` / ``json_schema`` become a grammar
(llguidance's). The engine asks it for compact JSON (:func:`compact_json_grammar`): with the grammar's default
flexible whitespace a small sampled model can spend its whole budget on newlines and tabs between two keys.
Tools are rendered by the chat template (the catalog's, for models whose own cannot show them) and calls are
made and read by :mod:`veilnet.models.toolcalls`; a streamed request with tools is generated whole and then
sent as chunks (the role, one ``tool_calls`` delta per call or the text, the finish reason, the usage).
``n`` > 1 runs ``n`` generations (seeds ``seed``, ``seed + 1``, ... when a seed is set) and adds their usage:
llama.cpp's own ``n`` counts one choice's tokens. A prompt longer than the context is
:class:`~veilnet.errors.InvalidRequest` with code ``context_length_exceeded``, never an engine failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veilnet.errors import InvalidRequest, NotFound, UpstreamError, VeilnetError
from veilnet.models.catalog import MODELS, model_path
from veilnet.models.engine import ModelInfo, NextTokens, TokenLogprob, check_embedding_models
from veilnet.models.limits import Admission
from veilnet.models.llamaserver import start_server
from veilnet.models.threads import engine_threads
from veilnet.models.tokenizer import LlamaCppTokenizer
from veilnet.models.toolcalls import ToolPlan
from veilnet.models.vocab import Vocabulary, read_vocabulary

__all__ = ["LlamaCppEngine", "compact_json_grammar", "llamacpp_error"]

_DONE = object()
Chunks = AsyncGenerator[dict[str, Any], None]  # a streamed answer's chunks
EMBEDDING_BATCH = 2048  # tokens per embeddings input (llama.cpp embeds an input in one micro-batch)


def llamacpp_error(error: object) -> VeilnetError:
    """llama.cpp's error document as the error it is: what it refuses in the request (HTTP 4xx, or a feature
    the model lacks) is the caller's (InvalidRequest, a prompt past the context named so); anything else is
    the engine's own failure (UpstreamError)."""
    if isinstance(error, dict):
        kind, code, message = str(error.get("type", "")), error.get("code"), str(error.get("message", error))
        if kind == "exceed_context_size_error":
            return InvalidRequest(f"the prompt has {error.get('n_prompt_tokens')} tokens; the context holds "
                                  f"{error.get('n_ctx')} tokens", param="messages", code="context_length_exceeded")
        if kind in ("invalid_request_error", "not_supported_error") or (isinstance(code, int) and 400 <= code < 500):
            return InvalidRequest(f"the model refused the request: {message}")
    return UpstreamError(f"llama.cpp error: {error}")


def compact_json_grammar(response_format: dict[str, Any], *, whitespace_flexible: bool = False) -> str | None:
    """The llguidance grammar for a ``json_object`` / ``json_schema`` response format (``None`` for any other):
    its schema (``{"type": "object"}`` for ``json_object``) with a top-level ``x-guidance`` that allows no
    whitespace between JSON tokens (``whitespace_flexible``: llguidance's default JSON whitespace, which a
    validator replays for other backends' answers) and skips keywords llguidance does not enforce (an unknown
    ``format``), as llama.cpp's own converter does. llama.cpp's server turns ``response_format`` into a grammar with flexible
    whitespace and ignores ``x-guidance``; a ``%llguidance`` grammar passed as ``grammar`` keeps it, but one
    that fails to compile is dropped there without a word, so it is compiled here first: a schema that does not
    compile is :class:`~veilnet.errors.InvalidRequest`."""
    kind = response_format.get("type")
    spec = response_format.get("json_schema")
    if kind == "json_object":
        schema: Any = {"type": "object"}
    elif kind == "json_schema" and isinstance(spec, dict):
        schema = spec.get("schema")
    else:
        return None
    if not isinstance(schema, dict):
        return None
    import llguidance
    import xllamacpp

    given = schema.get("x-guidance")  # a caller's own llguidance options, kept when they are an object
    options = {**(given if isinstance(given, dict) else {}), "whitespace_flexible": whitespace_flexible,
               "lenient": True}
    grammar = str(xllamacpp.json_schema_to_grammar(json.dumps({**schema, "x-guidance": options})))
    error = llguidance.LLMatcher.validate_grammar(grammar)
    if error:
        lines = [line.strip() for line in error.splitlines()]
        said = lines[: next((i for i, line in enumerate(lines) if line[:1].isdigit() and " | " in line), len(lines))]
        reason = " ".join(said).partition(": ")[2]
        raise InvalidRequest(f"response_format.json_schema.schema does not compile: {reason}")
    return grammar


def _choices(request: dict[str, Any]) -> list[dict[str, Any]]:
    """One request per choice asked for (``n``), seeds apart when the request sets one."""
    count = int(request.get("n") or 1)
    single = {k: v for k, v in request.items() if k != "n"}
    seed = single.get("seed")
    return [single if count == 1 or seed is None else {**single, "seed": seed + i} for i in range(count)]


def _merged(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """``n`` answers as one with ``n`` choices; usage: the prompt once, every choice's completion."""
    if len(answers) == 1:
        return answers[0]
    first = answers[0]
    choices = []
    for index, answer in enumerate(answers):
        for choice in answer.get("choices", [])[:1]:
            choices.append({**choice, "index": index})
    prompt = int(first.get("usage", {}).get("prompt_tokens", 0))
    completion = sum(int(a.get("usage", {}).get("completion_tokens", 0)) for a in answers)
    return {**first, "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


async def _each_choice(parts: list[dict[str, Any]], stream: Callable[[dict[str, Any]], Chunks]) -> Chunks:
    """The streams of ``n`` choices one after another, each under its own index, then one usage chunk that
    adds their completions (a single choice streams as it is). Closing it closes the stream it is reading,
    so that generation stops and its slot is free before ``aclose`` returns."""
    if len(parts) == 1:
        async with contextlib.aclosing(stream(parts[0])) as only:
            async for chunk in only:
                yield chunk
        return
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    last: dict[str, Any] = {}
    for index, part in enumerate(parts):
        async with contextlib.aclosing(stream(part)) as choice_chunks:
            async for chunk in choice_chunks:
                if chunk.get("usage"):
                    usage["prompt_tokens"] = int(chunk["usage"].get("prompt_tokens", 0))
                    usage["completion_tokens"] += int(chunk["usage"].get("completion_tokens", 0))
                    last = chunk
                if chunk.get("choices"):
                    for choice in chunk["choices"]:
                        choice["index"] = index
                    chunk.pop("usage", None)
                    yield chunk
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    yield {**last, "choices": [], "usage": usage}


@dataclass(slots=True)
class _WholeAnswer:
    """A streamed answer read to its end: its first chunk's identity fields, text, finish reason and usage."""

    head: dict[str, Any]
    text: str
    finish: Any
    usage: Any


async def _whole_answer(chunks: AsyncIterator[dict[str, Any]]) -> _WholeAnswer:
    head: dict[str, Any] = {}
    text: list[str] = []
    finish: Any = None
    usage: Any = None
    async for chunk in chunks:
        head = head or {k: chunk[k] for k in ("id", "created", "model", "object", "system_fingerprint") if k in chunk}
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            finish = choice.get("finish_reason") or finish
    return _WholeAnswer(head, "".join(text), finish, usage)


def _tool_chunks(message: dict[str, Any], finish: Any) -> list[dict[str, Any]]:
    """A whole answer to a request with tools as stream chunks: the role, the text, the calls (one delta
    each), the finish reason."""
    def chunk(delta: dict[str, Any], finish_reason: Any = None) -> dict[str, Any]:
        return {"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    chunks = [chunk({"role": "assistant", "content": None})]
    if message.get("content"):
        chunks.append(chunk({"content": message["content"]}))
    calls = message.get("tool_calls") or []
    chunks.extend(chunk({"tool_calls": [{"index": i, **call}]}) for i, call in enumerate(calls))
    chunks.append(chunk({}, finish))
    return chunks


class LlamaCppEngine:
    """Serves catalog models (e.g. ``SmolLM2-135M-Instruct``) with llama.cpp. An async context manager."""

    def __init__(
        self,
        models: list[str],
        *,
        cache_dir: Path,
        concurrency: int = 2,
        queue: int = 16,
        threads: int | None = None,
        context_length: int = 4096,
        embedding_models: list[str] | None = None,
        tokenizer: bool = False,
    ) -> None:
        for name in models:
            if name not in MODELS:
                raise NotFound(f"unknown model {name!r}; known: {', '.join(MODELS)}")
        self._names = list(models)
        self._embedding_names = check_embedding_models(self._names, embedding_models)
        self._embedding_lock = threading.Lock()  # one embeddings input at a time (see embeddings())
        self._cache_dir = cache_dir
        self._concurrency = concurrency
        self._threads = engine_threads(threads)  # None: this host's cores, see models/threads.py
        self._context = context_length
        self._servers: dict[str, Any] = {}
        self._admission = Admission(concurrency, queue)  # generations
        self._embedding_admission = Admission(1, queue)
        # tokenizer=True: each server also listens on a loopback port for /tokenize, behind this key
        self._tokenizer_key = secrets.token_urlsafe(24) if tokenizer else None
        self._tokenizers: dict[str, LlamaCppTokenizer] = {}

    async def __aenter__(self) -> LlamaCppEngine:
        await asyncio.to_thread(self.load)
        return self

    def load(self) -> None:
        """Load every model (blocking; ``async with`` does this in a worker thread)."""
        for name in self._names:
            if name not in self._servers:
                self._servers[name] = self._load(name, embeddings=name in self._embedding_names)

    async def __aexit__(self, *exc_info: object) -> None:
        self._tokenizers.clear()
        self._servers.clear()  # xllamacpp frees the model when the Server is collected

    @property
    def embedding_input_tokens(self) -> int:
        """The most tokens one embeddings input may have (llama.cpp embeds each input in one batch)."""
        return min(self._context, EMBEDDING_BATCH)

    def _load(self, name: str, *, embeddings: bool = False) -> Any:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path(name, self._cache_dir))
        # a context that embeds gets a power of two of llama.cpp slots (the generations' admission still
        # holds them to ``concurrency``): with 3, 5, 6, 7 or 12, llama.cpp aborts the whole process at the
        # first embeddings request (GGML_ASSERT in ggml_can_mul_mat; xllamacpp 2026.10, any context length)
        slots = 1 << (self._concurrency - 1).bit_length() if embeddings else self._concurrency
        params.n_ctx = self._context * slots
        params.n_parallel = slots
        params.cpuparams.n_threads = self._threads
        params.cpuparams_batch.n_threads = self._threads
        params.warmup = False
        params.verbosity = -1
        template = MODELS[name].chat_template
        if template is not None:
            params.chat_template = template
        if self._tokenizer_key is not None:
            params.port = 0  # any free loopback port; the server reports the one it took
            params.api_keys = [self._tokenizer_key]
        if embeddings:
            # The same context also embeds: mean-pooled, L2-normalised vectors, as OpenAI's are. Chat output
            # and speed are unchanged by this (measured: same tokens and logprobs); a second context in the
            # same process instead halves generation speed (the two contend for the CPU threads).
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
            params.n_batch = params.n_ubatch = self.embedding_input_tokens
        return start_server(params)

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(name, min(MODELS[name].context_length, self._context), embeddings=name in self._embedding_names,
                      embedding_concurrency=1 if name in self._embedding_names else None)
            for name in self._names
        ]

    def _server(self, request: dict[str, Any]) -> tuple[str, Any]:
        name = str(request.get("model"))
        server = self._servers.get(name)
        if server is None:
            raise NotFound(f"model {name!r} is not served here; served: {', '.join(self._names)}")
        return name, server

    @staticmethod
    def _native(request: dict[str, Any]) -> dict[str, Any]:
        native = {k: v for k, v in request.items() if v is not None and k not in ("user", "stream_options")}
        if "max_completion_tokens" in native:
            native["max_tokens"] = native.pop("max_completion_tokens")
        if native.get("logprobs") is True and not native.get("top_logprobs"):
            native["top_logprobs"] = 1  # llama.cpp gives no logprobs at all for top_logprobs 0
        fmt = native.get("response_format")
        grammar = compact_json_grammar(fmt) if isinstance(fmt, dict) and not native.get("tools") else None
        if grammar is not None:  # llama.cpp takes no grammar beside tools: a call's schema stays a response_format
            native["grammar"] = grammar
            del native["response_format"]
        return native

    async def _call(self, method: Callable[[dict[str, Any]], Any], name: str, request: dict[str, Any]) -> dict[str, Any]:
        async with self._admission.slot():
            try:
                result = await asyncio.to_thread(method, self._native(request))
            except ValueError as exc:  # llama.cpp's own request validation
                raise InvalidRequest(str(exc)) from exc
        if not isinstance(result, dict):
            raise UpstreamError("llama.cpp returned no result")
        if "error" in result and "choices" not in result:
            raise llamacpp_error(result["error"])
        result["model"] = name
        result.pop("timings", None)
        return result

    async def _stream(
        self, method: Callable[..., Any], name: str, request: dict[str, Any]
    ) -> Chunks:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        native = self._native(request)
        native["stream"] = True
        native.setdefault("stream_options", {"include_usage": True})

        stop = threading.Event()  # set when the reader is gone: llama.cpp cancels the generation

        def on_chunk(chunk: Any) -> bool:
            if stop.is_set():
                return True
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return False

        def run() -> None:
            try:
                method(native, on_chunk)
            except BaseException as exc:  # handed to the loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        async with self._admission.slot():
            worker = asyncio.ensure_future(asyncio.to_thread(run))
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, ValueError):
                        raise InvalidRequest(str(item)) from item
                    if isinstance(item, BaseException):
                        raise UpstreamError(f"llama.cpp failed: {item}") from item
                    if isinstance(item, dict):
                        if "error" in item and "choices" not in item:
                            raise llamacpp_error(item["error"])
                        item["model"] = name
                        item.pop("timings", None)
                        yield item
            finally:
                # a reader that left stops the generation at its next token; waiting for the thread to end
                # keeps the slot held until llama.cpp's is free too
                stop.set()
                with contextlib.suppress(Exception):
                    await worker

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        name, server = self._server(request)
        parts = _choices(request)
        answers = await asyncio.gather(*(self._chat_one(server, name, part) for part in parts))
        return _merged(answers)

    async def _chat_one(self, server: Any, name: str, request: dict[str, Any]) -> dict[str, Any]:
        plan = ToolPlan.of(request)
        result = await self._call(server.handle_chat_completions, name, plan.native)
        if plan.tools:
            for choice in result.get("choices", []):
                message = choice.get("message") or {}
                choice["message"], choice["finish_reason"] = plan.answer(str(message.get("content") or ""),
                                                                         choice.get("finish_reason"))
        return result

    def chat_stream(self, request: dict[str, Any]) -> Chunks:
        name, server = self._server(request)
        return _each_choice(_choices(request), lambda part: self._chat_stream_one(server, name, part))

    async def _chat_stream_one(self, server: Any, name: str, request: dict[str, Any]) -> Chunks:
        plan = ToolPlan.of(request)
        async with contextlib.aclosing(self._stream(server.handle_chat_completions, name, plan.native)) as chunks:
            if not plan.tools:
                async for chunk in chunks:
                    yield chunk
                return
            answer = await _whole_answer(chunks)  # a call is known only once it is whole: read the answer first
        message, finish = plan.answer(answer.text, answer.finish)
        for chunk in _tool_chunks(message, finish):
            yield {**answer.head, **chunk}
        if answer.usage is not None:
            yield {**answer.head, "choices": [], "usage": answer.usage}

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        name, server = self._server(request)
        parts = _choices(request)
        return _merged(await asyncio.gather(*(self._call(server.handle_completions, name, p) for p in parts)))

    def completion_stream(self, request: dict[str, Any]) -> Chunks:
        name, server = self._server(request)
        return _each_choice(_choices(request), lambda part: self._stream(server.handle_completions, name, part))

    async def tokenizer(self, model: str) -> LlamaCppTokenizer:
        """The tokenizer of served model ``model`` (the engine must be built with ``tokenizer=True``)."""
        found = self._tokenizers.get(model)
        if found is not None:
            return found
        name, server = self._server({"model": model})
        if self._tokenizer_key is None:
            raise UpstreamError("this engine was built without tokenizer=True")
        found = await LlamaCppTokenizer.connect(name, str(server.listening_address), self._tokenizer_key)
        self._tokenizers[name] = found
        return found

    async def vocabulary(self, model: str) -> Vocabulary:
        """Every token's bytes for served model ``model``, read from its GGUF file once (in a worker thread)."""
        name, _ = self._server({"model": model})
        return await asyncio.to_thread(read_vocabulary, model_path(name, self._cache_dir))

    async def next_tokens(self, model: str, token_ids: Sequence[int], top: int, *, score: int | None = None) -> NextTokens:
        """The ``top`` most likely next tokens after ``token_ids`` with their plain-softmax log probabilities,
        and that of token ``score`` (llama.cpp reports the drawn token's plain log probability; a logit bias
        makes ``score`` the one drawn, without touching the reported probabilities). llama.cpp keeps the
        slot's prefix cached, so calls for growing prefixes of one sequence cost the new tokens and one more.
        A sequence that does not fit the context is :class:`InvalidRequest` (``context_length_exceeded``)."""
        if len(token_ids) >= self._context:
            raise InvalidRequest(f"{len(token_ids)} tokens do not fit the reference's context of {self._context}",
                                 code="context_length_exceeded")
        name, server = self._server({"model": model})
        request: dict[str, Any] = {"prompt": list(token_ids), "max_tokens": 1, "n_probs": top, "temperature": 0.0,
                                   "cache_prompt": True}
        if score is not None:
            request["logit_bias"] = [[score, 1000.0]]
        result = await self._call(server.handle_completions, name, request)
        try:
            drawn = result["choices"][0]["logprobs"]["content"][0]
            entries = [TokenLogprob(int(e["id"]), bytes(e["bytes"]), float(e["logprob"])) for e in drawn["top_logprobs"]]
            if score is not None and int(drawn["id"]) != score:
                raise ValueError(f"token {drawn['id']} was drawn instead of {score}")
            return NextTokens(entries, float(drawn["logprob"]) if score is not None else None)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UpstreamError(f"llama.cpp gave no next-token log probabilities: {exc}") from exc

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        """Floats always (the miner app encodes base64 when asked). Inputs are embedded one at a time, one
        request at a time: llama.cpp decoding several embedding inputs side by side in one batch lets them
        bleed into each other's vectors (cosine to the input embedded alone drops to ~0.9), which validators
        would rightly fail; a chat decoding beside an input does not disturb it."""
        name = str(request.get("model"))
        server = self._servers.get(name)
        if server is None or name not in self._embedding_names:
            raise NotFound(f"model {name!r} has no embeddings on this miner")
        raw = request.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        async with self._embedding_admission.slot():
            results = await asyncio.to_thread(self._embed_each, server, inputs)
        data, prompt_tokens = [], 0
        for index, result in enumerate(results):
            if not isinstance(result, dict):
                raise UpstreamError("llama.cpp returned no result")
            error = result.get("error")
            if error is not None:
                message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
                if "too large to process" in message:
                    raise InvalidRequest(f"input {index} is longer than the {self.embedding_input_tokens} tokens "
                                         f"model {name!r} embeds at once; split it", param="input")
                if isinstance(error, dict) and error.get("code") == 400:
                    raise InvalidRequest(f"llama.cpp refused input {index}: {message}", param="input")
                raise UpstreamError(f"llama.cpp error: {message}")
            data.append({"object": "embedding", "index": index, "embedding": result["data"][0]["embedding"]})
            prompt_tokens += int(result.get("usage", {}).get("prompt_tokens", 0))
        return {"object": "list", "model": name, "data": data,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}

    def _embed_each(self, server: Any, inputs: list[Any]) -> list[Any]:
        with self._embedding_lock:
            try:
                return [server.handle_embeddings({"input": text}) for text in inputs]
            except ValueError as exc:  # llama.cpp's own request validation
                raise InvalidRequest(str(exc), param="input") from exc
