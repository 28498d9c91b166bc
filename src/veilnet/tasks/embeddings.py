"""Verifying a miner's embeddings against the validator's own reference model.

The reference embeds the same inputs; each returned vector must have the reference's dimension and point the
same way (cosine similarity at least ``min_cosine``), and the usage must recount. Same weights under another
quantisation or backend agree far above the threshold; different texts embedded by the same model agree at
most ~0.95 (SmolLM2, mean-pooled, near-duplicate sentences), and another model's space not at all.
"""

from __future__ import annotations

import math
from typing import Any

from veilnet.models.engine import ModelEngine
from veilnet.tasks.verdict import Verdict, failed

__all__ = ["cosine", "verify_embeddings_answer"]


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm > 0 else 0.0


def _vectors(response: dict[str, Any]) -> list[list[float]] | str:
    """The response's vectors in input order, or why they are unusable."""
    data = response.get("data")
    if not isinstance(data, list):
        return "answer lacks data"
    vectors: dict[int, list[float]] = {}
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            return f"data[{position}] is not an object"
        index, vector = item.get("index", position), item.get("embedding")
        if not isinstance(index, int) or index in vectors:
            return f"data[{position}] has a missing or repeated index"
        if not isinstance(vector, list) or not vector or not all(
            isinstance(x, int | float) and math.isfinite(x) for x in vector
        ):
            return f"data[{position}].embedding is not a list of finite floats"
        vectors[index] = [float(x) for x in vector]
    if sorted(vectors) != list(range(len(vectors))):
        return "data indexes are not 0..n-1"
    return [vectors[i] for i in range(len(vectors))]


async def verify_embeddings_answer(
    reference: ModelEngine, request: dict[str, Any], response: dict[str, Any], *, min_cosine: float = 0.98,
) -> Verdict:
    """Check ``response`` (a miner's embeddings answer, floats) for ``request`` with ``reference``."""
    if response.get("model") != request.get("model"):
        return failed(f"answered as model {response.get('model')!r}, asked {request.get('model')!r}")
    inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
    vectors = _vectors(response)
    if isinstance(vectors, str):
        return failed(vectors)
    if len(vectors) != len(inputs):
        return failed(f"{len(vectors)} embeddings returned for {len(inputs)} inputs")
    expected = await reference.embeddings({"model": request["model"], "input": inputs})
    expected_vectors = _vectors(expected)
    if isinstance(expected_vectors, str):
        raise ValueError(f"the reference's own embeddings are unusable: {expected_vectors}")
    claimed_tokens = (response.get("usage") or {}).get("prompt_tokens")
    counted_tokens = (expected.get("usage") or {}).get("prompt_tokens")
    if claimed_tokens != counted_tokens:
        return failed(f"usage claims {claimed_tokens} prompt tokens; the reference counts {counted_tokens}")
    similarities: list[float] = []
    for index, (got, want) in enumerate(zip(vectors, expected_vectors, strict=True)):
        if len(got) != len(want):
            return failed(f"input {index}: {len(got)} dimensions, the model has {len(want)}", checked=index)
        similarities.append(cosine(got, want))
    quality = max(0.0, min(1.0, min(similarities)))
    worst = min(range(len(similarities)), key=similarities.__getitem__)
    if similarities[worst] < min_cosine:
        return failed(f"input {worst}: cosine similarity {similarities[worst]:.3f} to the reference's embedding "
                      f"(at least {min_cosine} expected)", quality=quality, checked=len(similarities))
    return Verdict(ok=True, quality=quality, reason=None, checked=len(similarities))
