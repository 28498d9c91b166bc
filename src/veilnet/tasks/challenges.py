"""Challenge requests a cache cannot serve and a miner cannot tell from organic ones (pure, but for the pool).

Prompts come, in order of preference, from
1. replays of anonymised organic prompts (when the organic stream has any),
2. a pool of questions the reference model wrote from random topics and seeds (:class:`PromptPool`, filled in
   the background by :func:`fill_prompt_pool`, each used once), and
3. a combinatorial generator over wonderwords' English word lists (6,800 nouns, 900 adjectives, 1,000 verbs;
   MIT licence) and a few dozen task forms: ~10^11 prompts, so a cache of every challenge sent before
   answers almost none (``tests/tasks/test_challenges.py`` measures it).
No fixed prompt list exists to precompute. Sampling parameters are drawn from the shapes of recent organic
requests (:class:`RequestShape`), or from a broad default when there are none: challenges do not always ask
for logprobs, do not always use one ``max_tokens``, stream or not.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import math
import random
from collections import deque
from collections.abc import MutableSet, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import ValidationError

from veilnet.models.engine import ModelEngine
from veilnet.protocol.openai import ChatCompletionRequest, ChatMessage

__all__ = [
    "PromptPool",
    "RequestShape",
    "challenge_request",
    "conversation_key",
    "default_shape",
    "embeddings_texts",
    "fill_prompt_pool",
    "organic_requests",
    "random_prompt",
    "shape_of",
]

FORMS = (
    "Write a short story about a {adj} {noun} that wants to {verb}.",
    "Explain how a {adj} {noun} works to someone who has never seen one.",
    "Give me three tips for anyone who has to {verb} a {noun}.",
    "Write a poem about a {adj} {noun}.",
    "What are the pros and cons of a {adj} {noun}?",
    "Describe a day in the life of a {adj} {noun} in {count} sentences.",
    "Write a product description for a {adj} {noun}.",
    "Why would someone {verb} a {noun}? Answer briefly.",
    "List {count} creative uses for a {adj} {noun}.",
    "Compare a {noun} and a {noun2} in a short paragraph.",
    "Write a dialogue between a {noun} and a {noun2}.",
    "Summarise the history of the {noun} in {count} bullet points for a {adj} reader.",
    "Write a haiku about how to {verb} a {noun}.",
    "Write a Python function named {verb}_{noun_id} and explain it.",
    "Write a JSON object describing a {adj} {noun} with {count} fields.",
    "Give a step-by-step guide to {verb} with a {noun}.",
    "What is the difference between a {adj} {noun} and a {adj2} {noun}?",
    "Write a tweet announcing a new {adj} {noun}.",
    "Tell a joke about a {noun} and a {noun2}.",
    "Write a limerick about a {adj} {noun}.",
    "Suggest {count} names for a {adj} {noun} and say why.",
    "Write an email asking a colleague to {verb} the {noun}.",
    "Explain the word '{adj}' using a {noun} as the example.",
    "Write a recipe that somehow involves a {adj} {noun}.",
    "Make a markdown table of {count} facts about {adj} {noun_plural}.",
    "If a {noun} could {verb}, what would happen?",
    "Write a motivational speech for a {adj} {noun}.",
    "Describe a {adj} {noun} using only emoji and a short caption.",
    "Translate 'the {adj} {noun}' into French, Spanish and Japanese.",
    "Write the opening paragraph of a mystery novel about a missing {adj} {noun}.",
)
SYSTEMS = (
    "You are a helpful assistant.", "You are a concise assistant. Keep answers short.",
    "You are a friendly teacher.", "Answer in a formal tone.", "You are a creative writer.",
)
QUESTION_ASK = ("Write one question a curious person might ask an AI assistant about {topic}. "
                "Reply with the question only.")


@cache
def _words(name: str) -> tuple[str, ...]:
    """One of wonderwords' word lists (profanity removed), lower-case single words."""
    assets = importlib.resources.files("wonderwords") / "assets"
    banned = set((assets / "profanitylist.txt").read_text(encoding="utf-8").split())
    words = (w.strip() for w in (assets / name).read_text(encoding="utf-8").splitlines())
    return tuple(sorted({w for w in words if w.isalpha() and w.islower() and w not in banned}))


def random_prompt(rng: random.Random) -> str:
    """A prompt from the combinatorial space (task forms over the word lists)."""
    nouns, adjectives, verbs = _words("nounlist.txt"), _words("adjectivelist.txt"), _words("verblist.txt")
    noun = rng.choice(nouns)
    return rng.choice(FORMS).format(
        adj=rng.choice(adjectives), adj2=rng.choice(adjectives), noun=noun, noun2=rng.choice(nouns),
        verb=rng.choice(verbs), count=rng.randint(2, 7), noun_id=noun.replace("-", "_"),
        noun_plural=noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s"),
    )


def embeddings_texts(rng: random.Random, *, max_inputs: int = 4) -> str | list[str]:
    """Texts for an embeddings challenge: one to ``max_inputs`` prompts from the combinatorial space."""
    texts = [random_prompt(rng) for _ in range(rng.randint(1, max_inputs))]
    return texts[0] if len(texts) == 1 and rng.random() < 0.5 else texts


# the fields of an organic request a challenge copies as they are, its seed too (content and model excepted;
# the gateway's routing fields never reach the stream, ``user`` is dropped from it)
_COPIED = ("frequency_penalty", "logit_bias", "max_tokens", "max_completion_tokens", "n", "presence_penalty",
           "seed", "stop", "stream", "stream_options", "temperature", "top_p", "logprobs", "top_logprobs")


@dataclass(frozen=True)
class RequestShape:
    """An organic request's parameters, without its content: what challenges imitate. ``params`` holds the
    fields the app set, as it set them (which of ``max_tokens`` / ``max_completion_tokens``, whether
    ``stream_options`` was there, penalties and all), so a challenge is encoded field for field like one."""

    params: dict[str, Any] = field(default_factory=dict)
    system: bool = False

    @property
    def seeded(self) -> bool:
        return self.params.get("seed") is not None

    @property
    def stream(self) -> bool:
        return bool(self.params.get("stream", False))

    @property
    def logprobs(self) -> bool:
        return bool(self.params.get("logprobs", False))

    @property
    def max_tokens(self) -> int | None:
        value = self.params.get("max_completion_tokens", self.params.get("max_tokens"))
        return int(value) if value is not None else None


def shape_of(request: ChatCompletionRequest) -> RequestShape:
    return RequestShape(
        params=request.model_dump(mode="json", include=set(_COPIED), exclude_unset=True),
        system=any(m.role in ("system", "developer") for m in request.messages),
    )


def default_shape(rng: random.Random) -> RequestShape:
    """A broad spread of parameters, for when there is no organic traffic to imitate."""
    params: dict[str, Any] = {}
    roll = rng.random()
    if roll >= 0.05:
        params["max_tokens"] = (round(math.exp(rng.uniform(math.log(16), math.log(256)))) if roll < 0.85
                                else rng.randint(257, 1024))
    roll = rng.random()
    if roll >= 0.15:
        params["temperature"] = (0.0 if roll < 0.3 else round(rng.uniform(0.1, 1.0), 2) if roll < 0.85
                                 else round(rng.uniform(1.0, 1.5), 2))
    if rng.random() < 0.3:
        params["top_p"] = round(rng.uniform(0.8, 1.0), 2)
    if rng.random() < 0.5:
        params["stream"] = True
    if rng.random() < 0.25:
        params.update(logprobs=True, top_logprobs=rng.randint(0, 5))
    stop = rng.choice([(), (), (), (), ("\n\n",), ("END",), ("###", "\n\n\n")])
    if stop:
        params["stop"] = list(stop)
    if rng.random() < 0.5:
        params["seed"] = rng.randrange(2**31)
    return RequestShape(params=params, system=rng.random() < 0.3)


class PromptPool:
    """Questions the reference model wrote, each handed out once; bounded (the oldest go first)."""

    def __init__(self, size: int = 256) -> None:
        self._items: deque[str] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) == self._items.maxlen

    def add(self, prompt: str) -> None:
        self._items.append(prompt)

    def take(self) -> str | None:
        return self._items.popleft() if self._items else None


async def fill_prompt_pool(engine: ModelEngine, model: str, pool: PromptPool, rng: random.Random,
                           *, idle: float = 1.0) -> None:
    """Keep ``pool`` topped up with questions ``model`` writes about random topics (until cancelled); a
    challenge never waits for it."""
    nouns, adjectives = _words("nounlist.txt"), _words("adjectivelist.txt")
    while True:
        if pool.full:
            await asyncio.sleep(idle)
            continue
        topic = f"{rng.choice(adjectives)} {rng.choice(nouns)}s" if rng.random() < 0.5 else rng.choice(nouns)
        answer = await engine.chat({"model": model, "max_tokens": 48, "temperature": 1.0, "seed": rng.randrange(2**31),
                                    "messages": [{"role": "user", "content": QUESTION_ASK.format(topic=topic)}]})
        text = str(answer["choices"][0]["message"].get("content") or "").strip().split("\n")[0].strip()
        if 12 <= len(text) <= 300 and text.endswith("?"):
            pool.add(text)


def _shape(rng: random.Random, organic: Sequence[ChatCompletionRequest]) -> RequestShape:
    """A recent organic request's shape whenever there is one (anything else would mark the challenge)."""
    return shape_of(rng.choice(organic)) if organic else default_shape(rng)


def conversation_key(messages: Sequence[ChatMessage]) -> str:
    """What a cache would key an answer on: the conversation, case and spacing ignored."""
    return json.dumps([[m.role, " ".join(str(m.content).lower().split())] for m in messages])


def challenge_request(
    model: str, rng: random.Random, *, organic: Sequence[ChatCompletionRequest] = (), pool: PromptPool | None = None,
    replay_share: float = 0.3, max_tokens_cap: int = 1024, replayed: MutableSet[str] | None = None,
) -> ChatCompletionRequest:
    """A chat challenge for ``model``: a replayed organic prompt (``replay_share`` of the time, when
    ``organic`` has one for this model), else a pool question, else a combinatorial prompt; its parameters
    those of an ``organic`` request, field for field, its seed too (the broad default without any). A length limit is kept within ``max_tokens_cap`` so an answer stays verifiable; a request that
    set none sets none. With ``replayed`` (the conversations replayed before, added to), an organic
    conversation is replayed at most once."""
    shape = _shape(rng, organic)
    same_model = [r for r in organic if r.model == model
                  and (replayed is None or conversation_key(r.messages) not in replayed)]
    messages: list[ChatMessage]
    if same_model and rng.random() < replay_share:
        messages = list(rng.choice(same_model).messages)
        if replayed is not None:  # each organic conversation is replayed once: a cache of challenges misses it
            replayed.add(conversation_key(messages))
    else:
        prompt = (pool.take() if pool is not None else None) or random_prompt(rng)
        messages = [ChatMessage(role="user", content=prompt)]
        if shape.system:
            messages.insert(0, ChatMessage(role="system", content=rng.choice(SYSTEMS)))
    fields: dict[str, Any] = {"model": model, "messages": messages, **shape.params}
    for name in ("max_tokens", "max_completion_tokens"):
        if fields.get(name) is not None:
            fields[name] = min(int(fields[name]), max_tokens_cap)
    return ChatCompletionRequest(**fields)


def organic_requests(samples: Sequence[dict[str, str]]) -> list[ChatCompletionRequest]:
    """The organic stream's sampled requests (``{"request": json}``) that parse as chat requests."""
    out = []
    for sample in samples:
        try:
            out.append(ChatCompletionRequest.model_validate_json(sample.get("request", "")))
        except (ValidationError, ValueError):
            continue
    return out
