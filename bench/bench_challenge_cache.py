"""How many challenges a cache of every challenge sent before could answer (goal: at most 1 %).

A cheating miner keeps every challenge it was sent with its answer and serves a later challenge from the
cache when the conversation matches (case and spacing ignored; the cache ignores sampling parameters, the
most a cheat can hope for). Scenarios, 20,000 challenges each through the real generator
(``veilnet.tasks.challenges.challenge_request``):

- no organic traffic: every prompt from the combinatorial word-list space;
- organic traffic, replayed once: 30 % of challenges replay one of the 100 newest organic requests (a new
  organic request arrives per challenge; app prompts repeat with a Zipf law over 5,000 questions, as real
  traffic does), each conversation replayed at most once (the validator's ``replayed`` set);
- the baseline from the same run: the same traffic with replays drawn freely (the challenger before).

Run: .venv/bin/python bench/bench_challenge_cache.py [challenges]
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from collections.abc import Callable

from veilnet.protocol.openai import ChatCompletionRequest, ChatMessage
from veilnet.tasks.challenges import challenge_request, conversation_key, random_prompt

MODEL = "SmolLM2-135M-Instruct"


def organic_traffic(rng: random.Random) -> Callable[[], ChatCompletionRequest]:
    """App requests whose questions repeat with a Zipf law over 5,000 distinct questions."""
    questions = [random_prompt(random.Random(10_000 + i)) for i in range(5_000)]
    weights = [1 / (rank + 1) for rank in range(len(questions))]

    def next_request() -> ChatCompletionRequest:
        question = rng.choices(questions, weights)[0]
        return ChatCompletionRequest(model=MODEL, messages=[ChatMessage(role="user", content=question)],
                                     temperature=0.7, max_tokens=256)

    return next_request


def run(count: int, *, organic: bool, replay_once: bool, seed: int = 19) -> tuple[float, float]:
    """(share of challenges a cache of every earlier one answers, seconds per challenge)."""
    rng = random.Random(seed)
    arrivals = organic_traffic(random.Random(seed + 1)) if organic else None
    recent: deque[ChatCompletionRequest] = deque(maxlen=100)
    replayed: set[str] | None = set() if replay_once else None
    cache: set[str] = set()
    hits = 0
    started = time.perf_counter()
    for _ in range(count):
        if arrivals is not None:
            recent.append(arrivals())
        challenge = challenge_request(MODEL, rng, organic=list(recent), replay_share=0.3, replayed=replayed)
        key = conversation_key(challenge.messages)
        hits += key in cache
        cache.add(key)
    return hits / count, (time.perf_counter() - started) / count


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(f"{count:,} challenges each; a hit is a challenge whose conversation a cache of every earlier "
          "challenge holds (goal <= 1 %)")
    print(f"{'scenario':<44} {'cache hits':>10} {'µs/challenge':>13}")
    for name, organic, once in (("no organic traffic (word-list prompts)", False, True),
                                ("organic traffic, each replayed once", True, True),
                                ("baseline: organic traffic, replays drawn freely", True, False)):
        share, seconds = run(count, organic=organic, replay_once=once)
        print(f"{name:<44} {share * 100:>9.2f} % {seconds * 1e6:>13.0f}")


if __name__ == "__main__":
    main()
