"""Synthetic chat prompts miners cannot precompute: a shipped set plus templates filled at random."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["synthetic_chat_request"]

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


def synthetic_chat_request(model: str, rng: random.Random, *, max_tokens: int = 24) -> dict[str, Any]:
    """A chat request with a random prompt, sampling parameters and seed (always asking for logprobs)."""
    if rng.random() < 0.3:
        prompt = rng.choice(SHIPPED)
    else:
        template = rng.choice(TEMPLATES)
        prompt = template.format(**{key: rng.choice(values) for key, values in FILL.items()})
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": rng.randint(max(4, max_tokens // 2), max_tokens),
        "temperature": rng.choice([0.0, 0.3, 0.7, 1.0]),
        "seed": rng.randrange(2**31),
        "logprobs": True,
        "top_logprobs": 1,
    }
