"""The tokens a JSON response format's grammar allows after each prefix of an answer, for re-scoring it.

A miner generates an answer to a ``json_object`` / ``json_schema`` request under a grammar: at each step its
backend masks the tokens the grammar forbids, so the model's distribution there is its own renormalised over
the allowed tokens. To re-score such an answer the validator needs the same masks, so it replays the grammar
with llguidance (the grammar engine llama.cpp itself runs) over the reference model's vocabulary
(:mod:`veilnet.models.vocab`): :func:`json_constraint` builds the grammar the miner's embedded engine uses
(:func:`~veilnet.models.llamacpp.compact_json_grammar`, no whitespace between JSON tokens) and, when the answer
does not fit it, llguidance's default JSON grammar with flexible whitespace (what other backends write); the
first one that accepts every token of the answer is the constraint. None does when the answer is not JSON
under the schema (:mod:`veilnet.tasks.structured` already fails it) or uses what no llguidance grammar
writes (keys out of the schema's order, a schema llguidance cannot compile).

:class:`GrammarConstraint` keeps one matcher and moves it along ascending prefixes (the verifier asks in that
order); :meth:`~GrammarConstraint.allowed` is the mask after a prefix, :meth:`~GrammarConstraint.free_positions`
the positions whose token the grammar did not force byte for byte (only those carry information).
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import llguidance

from veilnet.errors import InvalidRequest
from veilnet.models.llamacpp import compact_json_grammar
from veilnet.models.tokenizer import Tokenizer
from veilnet.models.vocab import Vocabulary

__all__ = ["AllowedTokens", "GrammarConstraint", "TokenConstraint", "json_constraint"]


@dataclass(frozen=True)
class AllowedTokens:
    """A token mask: bit ``id`` of ``bits`` (little-endian) is set when token ``id`` may come next."""

    bits: bytes
    count: int  # how many tokens may come next

    @classmethod
    def of(cls, bits: bytes) -> AllowedTokens:
        return cls(bits, int.from_bytes(bits, "little").bit_count())

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, int) or token < 0 or token >> 3 >= len(self.bits):
            return False
        return bool(self.bits[token >> 3] >> (token & 7) & 1)

    def ids(self) -> list[int]:
        """The allowed token ids, ascending."""
        found, rest = [], int.from_bytes(self.bits, "little")
        while rest:
            low = rest & -rest
            found.append(low.bit_length() - 1)
            rest ^= low
        return found

    def only(self, tokens: Collection[int]) -> bool:
        """Nothing but some of ``tokens`` may come next."""
        return 0 < self.count <= len(tokens) and self.count == sum(1 for t in tokens if t in self)


class TokenConstraint(Protocol):
    """Which tokens a constrained request allows after a prefix of answer token ids, and which answer
    positions it left to the model; the reference scores the answer under the same constraint. ``name``:
    which grammar it is (``compact``: the miner engine's own)."""

    name: str

    def allowed(self, answer_prefix: Sequence[int]) -> AllowedTokens: ...

    def free_positions(self, answer: Sequence[int], pieces: Sequence[bytes]) -> list[int]: ...


class _Source:
    """What :class:`llguidance.TokenizerWrapper` reads from a tokenizer: every token's bytes, the end and
    special tokens, and a call that tokenises text. llguidance tokenises the text a grammar forces (a key,
    ``":"``) and allows only that tokenization there, so the call is the model's own tokenizer (llama.cpp's,
    as the miner's llguidance uses): any other would allow other tokens at forced positions."""

    def __init__(self, vocab: Vocabulary, tokenizer: Tokenizer) -> None:
        eog = tokenizer.end_of_generation
        self.eos_token_id = tokenizer.eos if tokenizer.eos >= 0 else vocab.eos
        self.bos_token_id = vocab.bos
        self.tokens = list(vocab.tokens)
        self.special_token_ids = sorted(vocab.special | eog)
        self._tokenizer = weakref.ref(tokenizer)  # weak: the cache below is keyed by the tokenizer

    def __call__(self, text: bytes | str) -> list[int]:
        tokenizer = self._tokenizer()
        if tokenizer is None:
            raise RuntimeError("the tokenizer behind this llguidance tokenizer is gone")
        return tokenizer.text_ids_blocking(text.decode() if isinstance(text, bytes) else text)


_LLTOKENIZERS: weakref.WeakKeyDictionary[Any, tuple[Vocabulary, llguidance.LLTokenizer]] = weakref.WeakKeyDictionary()


def _lltokenizer(vocab: Vocabulary, tokenizer: Tokenizer) -> llguidance.LLTokenizer:
    """llguidance's view of the vocabulary, ending on any end-of-generation token (built once per tokenizer,
    a fraction of a second, and dropped with it)."""
    known = _LLTOKENIZERS.get(tokenizer)
    if known is not None and known[0] is vocab:
        return known[1]
    wrapper = llguidance.TokenizerWrapper(_Source(vocab, tokenizer))
    eog = sorted(tokenizer.end_of_generation) or [vocab.eos]
    built = llguidance.LLTokenizer(wrapper, n_vocab=len(vocab), eos_token=eog)
    _LLTOKENIZERS[tokenizer] = (vocab, built)
    return built


class GrammarConstraint:
    """A grammar replayed over an answer's token ids (``grammar``: an llguidance grammar string)."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str, name: str) -> None:
        self.name = name
        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        self._consumed: list[int] = []

    def _move(self, prefix: Sequence[int]) -> bool:
        """Put the matcher right after ``prefix`` (ascending prefixes cost only their new tokens)."""
        ids = list(prefix)
        if ids[: len(self._consumed)] != self._consumed or self._matcher.is_error():
            self._matcher.reset()
            self._consumed = []
        fresh = ids[len(self._consumed):]
        if fresh and not self._matcher.consume_tokens(fresh):
            self._matcher.reset()
            self._consumed = []
            return False
        self._consumed = ids
        return True

    def accepts(self, answer: Sequence[int]) -> bool:
        """Every token of ``answer`` fits the grammar where it stands, by its bytes (llguidance's masks allow
        only the tokenizer's own split of forced text, ``{"`` not ``{`` then ``"``, but consuming checks bytes:
        the reference's re-tokenisation of an honest answer fits whatever split the miner generated)."""
        return self._move(answer)

    def allowed(self, answer_prefix: Sequence[int]) -> AllowedTokens:
        if not self._move(answer_prefix):
            return AllowedTokens(b"", 0)
        return AllowedTokens.of(self._matcher.compute_bitmask())

    def free_positions(self, answer: Sequence[int], pieces: Sequence[bytes]) -> list[int]:
        """The positions of ``answer`` (token ids, ``pieces`` their bytes) whose token the grammar did not
        force: its bytes are not all among the bytes the grammar forces there."""
        self._move([])
        free = []
        for index, (token, piece) in enumerate(zip(answer, pieces, strict=True)):
            forced = self._matcher.compute_ff_bytes()
            if not (piece and forced.startswith(piece)):
                free.append(index)
            if not self._matcher.consume_token(token):
                break
        self._matcher.reset()
        self._consumed = []
        return free


def json_constraint(vocab: Vocabulary, tokenizer: Tokenizer, response_format: dict[str, Any],
                    answer: Sequence[int]) -> GrammarConstraint | None:
    """The grammar (compact first, then flexible whitespace) under which ``response_format``'s answer
    ``answer`` (token ids) was generated; ``None`` when neither accepts it (or the schema does not compile).
    Blocking (it tokenises through ``tokenizer``): call it, and the constraint's methods, in a worker thread."""
    lltokenizer = _lltokenizer(vocab, tokenizer)
    for flexible in (False, True):
        try:
            grammar = compact_json_grammar(response_format, whitespace_flexible=flexible)
        except InvalidRequest:
            return None
        if grammar is None:
            return None
        constraint = GrammarConstraint(lltokenizer, grammar, "flexible" if flexible else "compact")
        if constraint.accepts(answer):
            return constraint
    return None
