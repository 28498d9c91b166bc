"""Server-sent events as veilnet's streams frame them: the one place the framing is spelled.

Every stream veilnet writes or reads (miner -> gateway -> app, the sealed streams, the confidential proxy)
is the subset of the WHATWG event-stream format OpenAI uses: ``data: <payload>`` events, each ended by an
empty line, ``: <text>`` comments (keep-alives, the miner's Epistula signature line), and a last
``data: [DONE]`` event. Relays handle whole blocks of lines at a time (:func:`rewrite_lines` looks only at
the lines that need a look, so a block of ordinary chunks passes through as one slice).

Only the standard library and pydantic-core (to serialise a document in one call).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic_core import to_json

__all__ = [
    "COMMENT",
    "DATA",
    "DONE",
    "DONE_MARK",
    "JSON_DATA",
    "KEEPALIVE",
    "ChunkIds",
    "data_line",
    "event",
    "json_event",
    "lines_of",
    "payload_of",
    "rewrite_lines",
]

DATA = b"data: "  #: the start of an event's data line
JSON_DATA = b"data: {"  #: the start of a data line carrying a JSON object
COMMENT = b": "  #: the start of a comment line
DONE_MARK = b"data: [DONE]"  #: the last event's line, without its line ends
DONE = DONE_MARK + b"\n\n"  #: the last event of every stream
KEEPALIVE = b": keep-alive\n\n"  #: a comment that keeps an idle connection open (clients ignore it)


def event(payload: bytes) -> bytes:
    """One event carrying ``payload`` (a single line: JSON or ``[DONE]``)."""
    return DATA + payload + b"\n\n"


def json_event(document: Any) -> bytes:
    """One event carrying ``document`` as compact JSON (non-finite floats become ``null``)."""
    return DATA + to_json(document) + b"\n\n"


def data_line(payload: bytes) -> bytes:
    """A data line without the empty line that ends its event: what :func:`rewrite_lines` puts back in place
    of a line it was given (the empty line that follows it in the block stays where it is)."""
    return DATA + payload + b"\n"


def payload_of(line: bytes) -> bytes | None:
    """The payload of a data line (line ends stripped), None for anything else (comments, blank lines)."""
    if not line.startswith(DATA):
        return None
    return line[len(DATA):].rstrip(b"\r\n")


class ChunkIds:
    """Gives every chunk of a stream one id, ``generation``, in place of the id its producer gave them.

    OpenAI streams repeat one id in every chunk; the producer's is learned from the first JSON data line and
    then replaced, as its exact ``"id":<value>`` bytes, in each block with one ``bytes.replace``: no chunk
    is parsed after the first. (Quotes inside JSON strings are escaped, so chunk text never matches.) A
    first chunk without a string id leaves the stream as it is.
    """

    __slots__ = ("new", "old", "settled")

    def __init__(self, generation: str) -> None:
        self.new = b'"id":' + to_json(generation)
        self.old = b""  # the producer's id as it is spelled, once learnt (b"": none to replace)
        self.settled = False  # the first JSON data line was read

    def __call__(self, block: bytes) -> bytes:
        if not self.settled:
            self._learn(block)
        return block.replace(self.old, self.new) if self.old else block

    def _learn(self, block: bytes) -> None:
        start = block.find(JSON_DATA)
        if start == -1:
            return
        end = block.find(b"\n", start)
        line = block[start + len(DATA):end if end != -1 else len(block)]
        self.settled = True
        try:
            chunk = json.loads(line)
        except ValueError:
            return
        old = chunk.get("id") if isinstance(chunk, dict) else None
        if not isinstance(old, str):
            return
        for value in {to_json(old), json.dumps(old).encode()}:
            for spelled in (b'"id":' + value, b'"id": ' + value):
                if spelled in line:
                    self.old = spelled
                    return


def lines_of(block: bytes) -> list[bytes]:
    """The lines of a block of whole lines, each with its newline (the last one may lack it)."""
    pieces = block.split(b"\n")
    tail = pieces.pop()
    return [piece + b"\n" for piece in pieces] + ([tail] if tail else [])


def rewrite_lines(block: bytes, needles: tuple[bytes, ...], rewrite: Callable[[bytes], bytes]) -> bytes:
    """``block`` with each line that starts with ``: `` (a comment) or contains one of ``needles`` replaced
    by ``rewrite(line)`` (newline included). Only those lines are looked at: a stream's ordinary chunks pass
    through as one slice, however many there are."""
    spans: set[tuple[int, int]] = set()

    def line_at(pos: int) -> tuple[int, int]:
        end = block.find(b"\n", pos)
        return block.rfind(b"\n", 0, pos) + 1, len(block) if end == -1 else end + 1

    if block.startswith(COMMENT):
        spans.add(line_at(0))
    for needle in (b"\n" + COMMENT, *needles):
        pos = block.find(needle)
        while pos != -1:
            span = line_at(pos + 1 if needle == b"\n" + COMMENT else pos)
            spans.add(span)
            pos = block.find(needle, span[1])
    if not spans:
        return block
    out, cursor = [], 0
    for start, end in sorted(spans):
        out += [block[cursor:start], rewrite(block[start:end])]
        cursor = end
    out.append(block[cursor:])
    return b"".join(out)
