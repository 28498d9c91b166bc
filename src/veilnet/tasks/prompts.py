"""Synthetic prompts miners cannot precompute: a shipped set plus templates filled at random."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["random_prompt", "synthetic_chat_request", "synthetic_embeddings_request"]

SHIPPED = [
    "Explain why the sky is blue to a ten-year-old.",
    "Write a haiku about autumn rain.",
    "Give three tips for learning a new language.",
    "Summarise the plot of a heist story in two sentences.",
    "What is the difference between weather and climate?",
    "Describe a sunrise over the mountains.",
    "List four uses for a paperclip.",
    "Why do cats purr?",
]

TEMPLATES = [
    "Write a {length} {form} about {topic}.",
    "Explain {topic} in {length} words or fewer.",
    "Give {count} facts about {topic}.",
    "Describe {topic} as if to a {audience}.",
]
FILL = {
    "length": ["short", "brief", "two-sentence", "fifty-word", "thirty"],
    "form": ["story", "poem", "dialogue", "letter", "summary"],
    "topic": ["lighthouses", "volcanoes", "honeybees", "the moon", "trains", "coffee", "glaciers", "owls",
              "bridges", "tides", "deserts", "libraries"],
    "count": ["two", "three", "four"],
    "audience": ["child", "sailor", "scientist", "tourist"],
}


def random_prompt(rng: random.Random) -> str:
    """A shipped prompt (30 %) or a template filled at random."""
    if rng.random() < 0.3:
        return rng.choice(SHIPPED)
    template = rng.choice(TEMPLATES)
    return template.format(**{key: rng.choice(values) for key, values in FILL.items()})


def synthetic_embeddings_request(model: str, rng: random.Random, *, max_inputs: int = 4) -> dict[str, Any]:
    """An embeddings request for one to ``max_inputs`` random texts (a prompt, sometimes with a random
    number, so no answer can be looked up)."""
    texts = [
        random_prompt(rng) if rng.random() < 0.5 else f"{random_prompt(rng)} ({rng.randrange(10**6)})"
        for _ in range(rng.randint(1, max_inputs))
    ]
    return {"model": model, "input": texts[0] if len(texts) == 1 and rng.random() < 0.5 else texts}


def synthetic_chat_request(model: str, rng: random.Random, *, max_tokens: int = 24) -> dict[str, Any]:
    """A chat request with a random prompt, sampling parameters and seed (always asking for logprobs)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": random_prompt(rng)}],
        "max_tokens": rng.randint(max(4, max_tokens // 2), max_tokens),
        "temperature": rng.choice([0.0, 0.3, 0.7, 1.0]),
        "seed": rng.randrange(2**31),
        "logprobs": True,
        "top_logprobs": 1,
    }
