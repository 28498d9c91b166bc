"""Human-written text that challenges draw from: passages at random offsets and lengths, and a vocabulary.

The default corpus is two public-domain books shipped in ``tasks/data/human`` (provenance beside them). A
validator may use any folder of UTF-8 ``.txt`` files instead; for AI-content detection it should, since a
miner holding the public corpus can look a human passage up (docs/tasks.md).
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from pathlib import Path

from veilnet.errors import ConfigError

__all__ = ["DEFAULT_CORPUS_DIR", "HumanCorpus", "Passage", "default_corpus"]

DEFAULT_CORPUS_DIR = Path(__file__).resolve().parent / "data" / "human"
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Passage:
    """Consecutive words of one document: ``prefix`` then ``continuation`` (each whitespace-normalised)."""

    source: str
    prefix: str
    continuation: str


class HumanCorpus:
    """Documents as word lists (line breaks and runs of spaces are not part of a human's text)."""

    def __init__(self, documents: dict[str, list[str]]) -> None:
        usable = {name: words for name, words in documents.items() if len(words) >= 500}
        if not usable:
            raise ConfigError("the human corpus has no document of at least 500 words")
        self._documents = usable
        self._names = sorted(usable)
        self._weights = [len(usable[name]) for name in self._names]

    @classmethod
    def from_dir(cls, folder: Path) -> HumanCorpus:
        """Every ``*.txt`` file in ``folder`` (UTF-8)."""
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise ConfigError(f"no .txt files in the human corpus folder {folder}")
        try:
            return cls({path.name: path.read_text(encoding="utf-8").split() for path in files})
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the human corpus in {folder}: {exc}") from exc

    @property
    def words(self) -> int:
        return sum(self._weights)

    def passage(self, rng: random.Random, prefix_words: int, continuation_words: int) -> Passage:
        """A random passage; documents are drawn in proportion to their length, the offset uniformly."""
        (name,) = rng.choices(self._names, weights=self._weights)
        words = self._documents[name]
        total = prefix_words + continuation_words
        start = rng.randrange(0, max(1, len(words) - total))
        return Passage(name, " ".join(words[start:start + prefix_words]),
                       " ".join(words[start + prefix_words:start + total]))

    @functools.cached_property
    def vocabulary(self) -> tuple[str, ...]:
        """Distinct words (letters and an apostrophe only), sorted, for random OCR text."""
        found = {match.group(0) for words in self._documents.values() for word in words
                 for match in _WORD.finditer(word)}
        return tuple(sorted(found))


@functools.cache
def default_corpus() -> HumanCorpus:
    """The shipped public-domain corpus (loaded once)."""
    return HumanCorpus.from_dir(DEFAULT_CORPUS_DIR)
