"""Generate honest SmolLM2 chat answers for the verifier's no-false-failure test (tests/data/honest_chat/).

Every answer comes from the miner's own engine (veilnet.models.llamacpp.LlamaCppEngine), non-streamed or
streamed and put back together (veilnet.tasks.stream.assemble_chat_stream), for prompts heavy in emoji, CJK,
code, lists, blank lines and JSON, with temperatures 0-1.5 (and unset), top_p, seeds, max_tokens small and
large, stop sequences, logprobs asked and not. Several answers share a prompt (verifying them in a row
reuses the reference's cached prompt).

Run: .venv/bin/python scripts/gen_honest_answers.py --prompts 600 --out tests/data/honest_chat/answers.jsonl.gz
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.stream import assemble_chat_stream

MODEL = "SmolLM2-135M-Instruct"

SUBJECTS = ["the ocean", "a cat named Miso 🐱", "東京の朝", "black holes", "sourdough bread", "a robot 🤖 learning to dance",
            "the French Revolution", "rainy days ☔", "prime numbers", "北京烤鸭", "a haunted lighthouse", "coffee ☕",
            "the moon 🌙", "김치찌개", "volcanoes 🌋", "a birthday party 🎉", "chess", "electric cars 🚗", "honeybees 🐝",
            "the Pythagorean theorem", "サクラ 🌸", "a lost umbrella", "jazz music 🎷", "pizza 🍕", "Москва зимой"]
FORMS = [
    "Write a short poem about {s}.", "Explain {s} to a child.", "Give me a bulleted list of 5 facts about {s}.",
    "Describe {s} using lots of emoji.", "Write a haiku about {s}, then a blank line, then a second haiku.",
    "Translate 'I love {s}' into Chinese, Japanese and Korean.", "Write a JSON object describing {s} with keys name, color, size.",
    "Write a Python function that prints a fact about {s}.", "List three questions about {s}, numbered, one per line.",
    "Tell a two-paragraph story about {s}. Separate the paragraphs with a blank line.",
    "请用中文介绍一下{s}。", "{s}について日本語で説明してください。", "Write a tweet about {s} with hashtags and emoji 😀🔥.",
    "Make a markdown table comparing {s} and tea.", "Write a limerick about {s}.",
    "Give step-by-step instructions involving {s}:\n1.", "Respond only with emoji to: {s}",
    "Write C code with a comment about {s}.", "What rhymes with {s}? Answer in a list.", "Summarise {s} in one sentence.",
]
SYSTEMS = [None, None, None, "You are a pirate. Answer like one 🏴‍☠️.", "Answer in JSON only.",
           "You are a terse assistant.", "Always answer with a numbered list.", "用中文回答。"]
STOPS = [None, None, None, None, ["\n"], ["."], ["\n\n"], ["```", "END"], ["!"]]


def messages(rng: random.Random) -> list[dict[str, str]]:
    out = []
    system = rng.choice(SYSTEMS)
    if system:
        out.append({"role": "system", "content": system})
    if rng.random() < 0.15:  # a second turn
        out += [{"role": "user", "content": rng.choice(FORMS).format(s=rng.choice(SUBJECTS))},
                {"role": "assistant", "content": rng.choice(["Sure! 😊", "Here you go:\n\n- one\n- two", "好的。", "```json\n{}\n```"])}]
    out.append({"role": "user", "content": rng.choice(FORMS).format(s=rng.choice(SUBJECTS))})
    return out


def request(rng: random.Random, prompt: list[dict[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": prompt}
    temperature = rng.choice([None, 0.0, 0.0, 0.2, 0.5, 0.7, 0.7, 1.0, 1.0, 1.2, 1.5])
    if temperature is not None:
        body["temperature"] = temperature
    if rng.random() < 0.25:
        body["top_p"] = rng.choice([0.5, 0.8, 0.9, 0.95])
    if rng.random() < 0.8:
        body["seed"] = rng.randrange(2**31)
    kind = rng.random()
    body["max_tokens"] = rng.randint(1, 12) if kind < 0.45 else rng.randint(13, 48) if kind < 0.9 else rng.randint(49, 128)
    stop = rng.choice(STOPS)
    if stop:
        body["stop"] = stop
    if rng.random() < 0.5:
        body["logprobs"] = True
        body["top_logprobs"] = rng.choice([0, 1, 3])
    if rng.random() < 0.5:
        body["stream"] = True
    return body


async def answer(engine: LlamaCppEngine, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("stream"):
        return assemble_chat_stream([chunk async for chunk in engine.chat_stream(dict(body))])
    return await engine.chat(dict(body))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=600)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("tests/data/honest_chat/answers.jsonl.gz"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start, done = time.monotonic(), 0
    async with LlamaCppEngine([MODEL], cache_dir=Path.home() / ".veilnet" / "models", concurrency=2,
                              threads=args.threads) as engine:
        partial = args.out.with_suffix(".partial")  # plain lines as they come (usable if the run is cut short)
        with partial.open("w", encoding="utf-8") as out:
            for index in range(args.prompts):
                prompt = messages(rng)
                bodies = [request(rng, prompt) for _ in range(args.per_prompt)]
                answers = await asyncio.gather(*(answer(engine, b) for b in bodies))
                for body, got in zip(bodies, answers, strict=True):
                    got.pop("id", None)
                    got.pop("created", None)
                    out.write(json.dumps({"request": body, "answer": got}, ensure_ascii=False) + "\n")
                    out.flush()
                    done += 1
                if index % 20 == 0:
                    print(f"{done} answers, {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    with gzip.open(args.out, "wb", compresslevel=9) as packed:
        packed.write(partial.read_bytes())
    partial.unlink()
    print(f"{done} answers in {time.monotonic() - start:.0f} s -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
