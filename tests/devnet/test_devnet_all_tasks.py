"""One devnet serving every task veilnet ships — chat, embeddings, OCR, AI-content detection and page
orientation — through the one task interface: the validator challenges each, the miners answer each, and each
non-chat answer verifies from the truth its challenge kept (read back from the validator's answers stream,
verified as a scorer does); the miners earn incentive."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from veilnet.devnet.runtime import load_runtime
from veilnet.tasks.interface import VerifyTools
from veilnet.tasks.registry import task_named

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(900)]

TASKS = ("chat", "ocr", "ai-detection", "orientation")


def _veilnet(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veilnet", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def _answers(url: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(url)
    try:
        return [json.loads(fields[b"record"]) for key in client.keys("veilnet:validator:*:answers")
                for _, fields in client.xrange(key)]
    finally:
        client.close()


def test_every_shipped_task_in_one_devnet(tmp_path: Path) -> None:
    data = tmp_path / "devnet"
    up = _veilnet("devnet", "up", *(x for t in TASKS for x in ("--task", t)), "--miners", "2", "--detach",
                  "--data-dir", str(data), "--block-time", "0.5", "--tempo", "30")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        runtime = load_runtime(data)
        assert runtime is not None
        deadline = time.monotonic() + 400
        seen: collections.Counter[str] = collections.Counter()
        while time.monotonic() < deadline:
            records = _answers(runtime.redis_url)
            seen = collections.Counter(str(r["observation"]["task"]) for r in records  # type: ignore[index]
                                       if r["observation"]["outcome"] == "ok")  # type: ignore[index]
            if {"chat", "embeddings", "ocr", "ai-detection", "orientation"} <= set(seen):
                break
            time.sleep(3)
        else:
            pytest.fail(f"not every task was challenged and answered: {dict(seen)}")

        async def verify_all() -> list[tuple[str, bool, float]]:
            out = []
            for record in records:
                task = str(record["observation"]["task"])  # type: ignore[index]
                if task in ("chat", "embeddings") or record["answer"] is None:
                    continue  # verified against the reference model by the validator's own scorer
                verdict = await task_named(task).verify_json(record["request"], record["truth"],  # type: ignore[arg-type]
                                                             record["answer"], VerifyTools())
                out.append((task, verdict.ok, verdict.quality))
            return out

        verdicts = asyncio.run(verify_all())
        assert {task for task, _, _ in verdicts} == {"ocr", "ai-detection", "orientation"}
        assert all(ok for _, ok, _ in verdicts), verdicts
        assert all(quality >= 0.9 for task, _, quality in verdicts if task != "ai-detection"), verdicts

        status = json.loads(_veilnet("devnet", "status", "--json", "--data-dir", str(data)).stdout)
        assert all(s["alive"] for s in status["services"]), status["services"]
    finally:
        down = _veilnet("devnet", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout + down.stderr
