"""The devnet is a service you keep: stopped and started again it serves the same subnet at the same URL with
the same keys and the miners `devnet add-miner` added; `veilnet keys` writes where its gateway reads;
`devnet down` ends a foreground `devnet up`, and an old `devnet up` that ends later never stops the newer
devnet's services. Real processes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from veilnet.devnet.runtime import load_runtime
from veilnet.models.threads import engine_threads

pytestmark = [pytest.mark.model, pytest.mark.slow]

MODEL = "SmolLM2-135M-Instruct"


def veilnet(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veilnet", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def status(data: Path) -> dict[str, Any]:
    result = veilnet("devnet", "status", "--json", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def ask(gateway_url: str, key: str) -> str:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    return answer.choices[0].message.content or ""


def wait_foreground_ready(up: subprocess.Popen[str], data: Path, stderr: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            pytest.fail(f"`devnet up` exited with {up.returncode}: {stderr.read_text()}")
        runtime = load_runtime(data) if (data / "devnet.json").exists() else None
        if runtime is not None and runtime.ready and runtime.supervisor is not None:
            return
        time.sleep(0.5)
    pytest.fail("the foreground `devnet up` did not get ready")


def test_a_stopped_devnet_comes_back_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "devnet"
    monkeypatch.setenv("VEILNET_DEVNET__DATA_DIR", str(data))  # where `veilnet keys` looks for a running devnet
    monkeypatch.setenv("VEILNET_DATA_DIR", str(tmp_path / "elsewhere"))  # the keys' default database is not it
    out, err = (tmp_path / "up.out").open("w"), (tmp_path / "up.err").open("w")
    first_up = subprocess.Popen(
        [sys.executable, "-m", "veilnet", "devnet", "up", "--miners", "1", "--block-time", "0.25", "--tempo", "20"],
        stdout=out, stderr=err, text=True)
    try:
        wait_foreground_ready(first_up, data, tmp_path / "up.err")
        before = status(data)
        assert before["foreground"] is True and before["database_url"].endswith(f"{data}/veilnet.sqlite3")
        assert {n["name"]: n["threads"] for n in before["neurons"]} == {
            "owner": None, "validator-0": engine_threads(None, 2), "miner-0": engine_threads(None, 2)}

        created = veilnet("keys", "create", "--name", "app", "--credit", "1")
        assert created.returncode == 0 and "the running devnet's" in created.stderr, created.stderr
        app_key = created.stdout.strip().splitlines()[-1]
        assert ask(before["gateway_url"], app_key)  # the gateway knows a key `veilnet keys` just made

        added = veilnet("devnet", "add-miner")
        assert added.returncode == 0, added.stderr
        assert "miner-1 serves SmolLM2-135M-Instruct (llamacpp)" in added.stdout
        miner1 = next(n for n in status(data)["neurons"] if n["name"] == "miner-1")
        assert miner1["uid"] is not None and miner1["threads"] == engine_threads(None, 3)

        # the foreground `up` is suspended, so only `down` can end it (once it runs again)
        first_up.send_signal(signal.SIGSTOP)
        down = veilnet("devnet", "down")
        assert down.returncode == 0 and "devnet up" in down.stdout and "miner-1" in down.stdout, down.stdout
        assert not any(s["alive"] for s in status(data)["services"])

        again = veilnet("devnet", "up", "--detach")
        assert again.returncode == 0, again.stderr
        after = status(data)
        for field in ("gateway_url", "chain_url", "redis_url", "netuid", "api_key", "database_url"):
            assert after[field] == before[field], field
        axons = {n["name"]: (n["uid"], n["axon_url"]) for n in after["neurons"]}
        assert axons == {**{n["name"]: (n["uid"], n["axon_url"]) for n in before["neurons"]},
                         "miner-1": (miner1["uid"], miner1["axon_url"])}
        old_stake = {n["name"]: n["stake"] for n in before["neurons"]}
        assert all(n["stake"] >= old_stake.get(n["name"], 0) for n in after["neurons"])  # kept, grown by emission
        assert all(s["alive"] for s in after["services"]) and len(after["services"]) == 6  # miner-1 too
        assert ask(after["gateway_url"], app_key) and ask(after["gateway_url"], after["api_key"])

        # the old `up` runs again, sees the SIGTERM `down` sent and ends: without touching the new services
        first_up.send_signal(signal.SIGCONT)
        assert first_up.wait(timeout=60) == 0
        assert all(s["alive"] for s in status(data)["services"]) and ask(after["gateway_url"], app_key)
    finally:
        if first_up.poll() is None:
            os.kill(first_up.pid, signal.SIGCONT)
        down = veilnet("devnet", "down")
        first_up.kill()
        first_up.wait()
        out.close()
        err.close()
    assert down.returncode == 0
    assert not any(s["alive"] for s in status(data)["services"])
    # the foreground `up` wrote to a file: whole status tables (no 80-column cut), ending as it was told to
    printed = (tmp_path / "up.out").read_text()
    assert "…" not in printed and str(data / "logs" / "validator-0.log") in printed
    assert f"llama.cpp: {engine_threads(None, 2)} thread" in printed
    assert "\x1b[" not in printed  # no cursor movement or colours in a file
