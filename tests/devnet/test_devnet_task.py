"""The tutorial of docs/tasks.md ("build your own subnet"), step by step as a newcomer runs it:
``veilnet new-task`` from a spec, the package's own tests, ``veilnet devnet up --task``, a request through the
gateway, incentive for the miners on chain, ``veilnet devnet down``. Installing the package is replaced by its
dist-info beside its sources on PYTHONPATH (what ``pip install -e .`` gives the processes, without touching
the shared virtual environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.scaffold.installed import write_dist_info

from veilnet.scaffold import load_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SPEC = """
description = "Count the words of a text"
verification = "known_truth"
inputs = [{name = "text", type = "string"}]
outputs = [{name = "words", type = "integer"}]
"""


def test_build_your_own_subnet(tmp_path: Path) -> None:
    spec = tmp_path / "word-count.toml"
    spec.write_text(SPEC)
    package = tmp_path / "veilnet-task-word-count"
    site = tmp_path / "site"
    write_dist_info(load_spec(spec, "word-count"), site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package / "src"), str(site)])}

    def veilnet(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "veilnet", *args], capture_output=True, text=True,
                              timeout=timeout, check=False, env=env)

    # 1. scaffold, 2. its own tests
    made = veilnet("new-task", "word-count", "--spec", str(spec), "--dir", str(package))
    assert made.returncode == 0, made.stdout + made.stderr
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package, env=env,
                           capture_output=True, text=True, timeout=600, check=False)
    assert tests.returncode == 0 and "11 passed" in tests.stdout, tests.stdout + tests.stderr

    # 3. a devnet serving the task
    data = str(tmp_path / "devnet")
    up = veilnet("devnet", "up", "--task", "word-count", "--miners", "2", "--detach", "--data-dir", data,
                 "--block-time", "0.25", "--tempo", "20")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "/v1/tasks/word-count" in up.stdout
        status = json.loads(veilnet("devnet", "status", "--json", "--data-dir", data).stdout)
        miners = [n for n in status["neurons"] if n["role"] == "miner"]
        assert all(n["tasks"] == ["word-count"] for n in miners)

        # 4. an app's request through the gateway
        request = urllib.request.Request(
            f"{status['gateway_url']}/v1/tasks/word-count", method="POST",
            data=json.dumps({"model": "word-count-v1", "text": "one two three"}).encode(),
            headers={"Authorization": f"Bearer {status['api_key']}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["model"] == "word-count-v1" and isinstance(answer["words"], int)
        assert answer["usage"]["prompt_tokens"] == 1

        # 5. incentive: the validator challenged and verified the task, and the chain paid the miners
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = json.loads(veilnet("devnet", "status", "--json", "--data-dir", data).stdout)
            miners = [n for n in status["neurons"] if n["role"] == "miner"]
            if all((n["incentive"] or 0) > 0 for n in miners):
                break
            time.sleep(2)
        else:
            pytest.fail(f"the miners earned no incentive: {miners}")
        assert all(s["alive"] for s in status["services"]), status["services"]

        # 6. one more miner for the task on the running devnet
        added = veilnet("devnet", "add-miner", "--task", "word-count", "--data-dir", data)
        assert added.returncode == 0, added.stdout + added.stderr
        status = json.loads(veilnet("devnet", "status", "--json", "--data-dir", data).stdout)
        assert [n["tasks"] for n in status["neurons"] if n["role"] == "miner"] == [["word-count"]] * 3
    finally:
        down = veilnet("devnet", "down", "--data-dir", data)
    assert down.returncode == 0, down.stdout + down.stderr
