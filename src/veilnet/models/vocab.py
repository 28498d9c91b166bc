"""Every token id's raw bytes, read from a model's GGUF file (what a grammar's token mask is computed over).

A grammar engine (llguidance) decides which tokens may come next from the bytes each token stands for, so
the validator needs the whole table, not just the tokens of one text. The model's llama.cpp server gives
pieces one text at a time; the GGUF file holds the vocabulary itself, and ``gguf`` (the ggml project's own
reader) reads it as llama.cpp does. Token strings are stored in the tokenizer's own spelling and turned back
into bytes here, as llama.cpp's ``token_to_piece`` does:

- ``gpt2`` (byte-level BPE, SmolLM2): each character through the inverse of GPT-2's ``bytes_to_unicode``;
- ``llama`` (SentencePiece, Gemma): ``▁`` is a space, ``<0xAB>`` byte tokens are that byte;
- control, unknown and unused tokens (and user-defined ones spelled like ``<tag>``) become ``b"\\xff"`` and
  their name: llguidance's mark for a special token, which no grammar's text can match.

:func:`read_vocabulary` caches one table per file: a validator reads it once.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from veilnet.errors import ConfigError

__all__ = ["Vocabulary", "gpt2_byte_decoder", "read_vocabulary"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPECIAL = b"\xff"
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """A model's tokens by id (``tokens[id]``: its raw bytes; special tokens start with ``b"\\xff"``), its
    end-of-sequence id and the ids of its special tokens. Compared and hashed by identity (one per file)."""

    tokens: tuple[bytes, ...]
    eos: int
    bos: int | None
    special: frozenset[int]

    def __len__(self) -> int:
        return len(self.tokens)


@functools.cache
def gpt2_byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's ``bytes_to_unicode``: printable bytes stand for themselves, the other 68 for
    the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _gpt2_bytes(text: str) -> bytes:
    decoder = gpt2_byte_decoder()
    try:
        return bytes(decoder[c] for c in text)
    except KeyError:  # not byte-level spelling (an added token): its UTF-8, as llama.cpp copies it
        return text.encode()


def _spm_bytes(text: str, kind: int) -> bytes:
    if kind == BYTE:
        match = _BYTE_TOKEN.fullmatch(text)
        if match:
            return bytes([int(match.group(1), 16)])
    return text.replace("▁", " ").encode()


def token_bytes(text: str, kind: int, model: str) -> bytes:
    """One token's raw bytes from its GGUF spelling ``text``, type ``kind``, tokenizer ``model``."""
    if kind in (CONTROL, UNKNOWN, UNUSED) or (kind == USER_DEFINED and text.startswith("<") and text.endswith(">")):
        return SPECIAL + text.encode()
    if kind == USER_DEFINED:
        return text.encode()
    return _gpt2_bytes(text) if model == "gpt2" else _spm_bytes(text, kind)


@functools.cache
def read_vocabulary(path: Path) -> Vocabulary:
    """The vocabulary of the GGUF file at ``path`` (cached per path; a few seconds for 262k tokens)."""
    import gguf

    reader = gguf.GGUFReader(path)

    def field(name: str) -> gguf.ReaderField:
        found = reader.get_field(name)
        if found is None:
            raise ConfigError(f"{path.name} has no {name}")
        return found

    model = str(field("tokenizer.ggml.model").contents())
    if model not in ("gpt2", "llama"):
        raise ConfigError(f"{path.name}: tokenizer {model!r} is neither gpt2 (BPE) nor llama (SentencePiece)")
    names = field("tokenizer.ggml.tokens")
    kinds_field = reader.get_field("tokenizer.ggml.token_type")
    texts = [bytes(names.parts[i]).decode() for i in names.data]
    kinds = [int(kinds_field.parts[i][0]) for i in kinds_field.data] if kinds_field else [NORMAL] * len(texts)
    tokens = tuple(token_bytes(t, k, model) for t, k in zip(texts, kinds, strict=True))
    bos = reader.get_field("tokenizer.ggml.bos_token_id")
    return Vocabulary(tokens, int(field("tokenizer.ggml.eos_token_id").contents()),
                      int(bos.contents()) if bos is not None else None,
                      frozenset(i for i, t in enumerate(tokens) if t.startswith(SPECIAL)))
