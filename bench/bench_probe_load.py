"""Organic latency while the validator probes: a devnet of 3 SmolLM2 miners on this machine, one chat request
(8 tokens) and one embeddings request (2 texts) a second through the gateway, for 40 s from the moment
`veilnet devnet up` returns. The validator's first probe round starts at once and keeps every miner busy
through a 10 s chat window and a 10 s embeddings window; the requests that start before the round ends
(the validator logs it) are the figures under load, those after it the baseline from the same run.
Run: .venv/bin/python bench/bench_probe_load.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import openai

MODEL = "SmolLM2-135M-Instruct"
SECONDS = 40


@dataclass(frozen=True)
class Sample:
    kind: str  # chat or embeddings
    started: float  # time.time()
    seconds: float
    ok: bool


def veilnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veilnet", *args], capture_output=True, text=True, check=False)


def load(client: openai.OpenAI, kind: str, out: list[Sample]) -> None:
    end = time.time() + SECONDS
    while time.time() < end:
        started = time.time()
        try:
            if kind == "chat":
                client.chat.completions.create(model=MODEL, max_tokens=8,
                                               messages=[{"role": "user", "content": "Say hello"}])
            else:
                client.embeddings.create(model=MODEL, input=["hello", "a lighthouse"])
            ok = True
        except openai.APIError:
            ok = False
        out.append(Sample(kind, started, time.time() - started, ok))
        time.sleep(max(0.0, 1.0 - (time.time() - started)))


def round_end(log: Path, day: str) -> float | None:
    """When the validator logged the end of its first probe round (epoch seconds), if it did."""
    for line in log.read_text().splitlines():
        found = re.match(r"(\d\d:\d\d:\d\d) .*probe round", line)
        if found:
            return datetime.strptime(f"{day} {found.group(1)}", "%Y-%m-%d %H:%M:%S").timestamp()
    return None


def one_run(data: Path) -> tuple[list[Sample], float | None]:
    up = veilnet("devnet", "up", "--detach", "--miners", "3", "--validators", "1", "--data-dir", str(data),
                 "--block-time", "0.25", "--tempo", "20")
    if up.returncode != 0:
        raise SystemExit(f"devnet up failed: {up.stderr[-2000:]}")
    try:
        status = json.loads(veilnet("devnet", "status", "--json", "--data-dir", str(data)).stdout)
        client = openai.OpenAI(base_url=f"{status['gateway_url']}/v1", api_key=status["api_key"], max_retries=0,
                               timeout=120)
        samples: list[Sample] = []
        threads = [threading.Thread(target=load, args=(client, kind, samples)) for kind in ("chat", "embeddings")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return samples, round_end(data / "logs" / "validator-0.log", time.strftime("%Y-%m-%d"))
    finally:
        veilnet("devnet", "down", "--data-dir", str(data))


def line(label: str, samples: list[Sample]) -> str:
    if not samples:
        return f"  {label:<34} no requests"
    seconds = sorted(s.seconds for s in samples)
    failed = sum(1 for s in samples if not s.ok)
    return (f"  {label:<34} n={len(samples):>3}  p50 {statistics.median(seconds):6.2f} s  "
            f"max {seconds[-1]:6.2f} s  failed {failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    runs = parser.parse_args().runs
    for run in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            samples, ended = one_run(Path(tmp) / "devnet")
        print(f"run {run + 1}: the first probe round "
              + ("did not end within the run" if ended is None else f"ended {ended - samples[0].started:.0f} s in"))
        cut = ended if ended is not None else float("inf")
        for kind in ("chat", "embeddings"):
            mine = sorted((s for s in samples if s.kind == kind), key=lambda s: s.started)
            print(line(f"{kind}, during the probe round", [s for s in mine if s.started < cut]))
            print(line(f"{kind}, after it (baseline)", [s for s in mine if s.started >= cut]))


if __name__ == "__main__":
    main()
