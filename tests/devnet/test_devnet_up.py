"""`veilnet devnet up` end to end: 3 miners on SmolLM2, 1 validator with the gateway, on this machine.

The openai SDK gets an answer through the gateway, `status --json` describes every neuron, and after two
epochs the chain shows incentive for the miners; `down` stops every process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.conftest import free_port

from veilnet.devnet.runtime import load_runtime

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _veilnet(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veilnet", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_devnet_up_serves_and_rewards_miners(tmp_path: Path) -> None:
    data = str(tmp_path / "devnet")
    up = _veilnet("devnet", "up", "--detach", "--miners", "3", "--validators", "1", "--data-dir", data,
                  "--block-time", "0.25", "--tempo", "20")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = json.loads(_veilnet("devnet", "status", "--json", "--data-dir", data).stdout)
        assert status["gateway_url"] and status["api_key"].startswith("vn-")
        roles = sorted(n["role"] for n in status["neurons"])
        assert roles == ["miner", "miner", "miner", "owner", "validator"]
        assert all(s["alive"] for s in status["services"])

        client = openai.OpenAI(base_url=f"{status['gateway_url']}/v1", api_key=status["api_key"], max_retries=0)
        answer = client.chat.completions.create(model="SmolLM2-135M-Instruct", max_tokens=8,
                                                messages=[{"role": "user", "content": "Say hello"}])
        assert answer.choices[0].message.content
        assert answer.usage is not None and answer.usage.model_extra["cost"] > 0
        # the devnet's miners embed too (the SDK asks for base64 and decodes it)
        vectors = client.embeddings.create(model="SmolLM2-135M-Instruct", input=["hello", "a lighthouse"])
        assert [len(item.embedding) for item in vectors.data] == [576, 576]
        assert abs(sum(x * x for x in vectors.data[0].embedding) - 1.0) < 1e-3
        _confidential_requests(client, status, tmp_path / "devnet")

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = json.loads(_veilnet("devnet", "status", "--json", "--data-dir", data).stdout)
            miners = [n for n in status["neurons"] if n["role"] == "miner"]
            if all((n["incentive"] or 0) > 0 for n in miners):
                break
            time.sleep(2)
        else:
            pytest.fail(f"miners never earned incentive: {miners}")
        validator = next(n for n in status["neurons"] if n["role"] == "validator")
        assert validator["dividends"] > 0
        assert all((n["score"] or 0) > 0 for n in miners)  # the validator's scores, read from its Redis state
    finally:
        down = _veilnet("devnet", "down", "--data-dir", data)
        assert down.returncode == 0
    runtime = load_runtime(tmp_path / "devnet")
    assert runtime is not None and len(runtime.services) == 7 and not runtime.running_services()


def _confidential_requests(client: openai.OpenAI, status: dict[str, Any], data: Path) -> None:
    """The devnet's miners serve sealed requests from the development enclave: through the gateway with
    provider.confidential=required, and end to end through `veilnet confidential-proxy`."""
    hello = [{"role": "user", "content": "Say hello"}]
    deadline = time.monotonic() + 60
    while True:  # the gateway attests miners right after it starts
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="SmolLM2-135M-Instruct", max_tokens=8, messages=hello,
                extra_body={"provider": {"confidential": "required"}})
            break
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert raw.parse().choices[0].message.content and raw.headers["X-Veilnet-Simulated"] == "true"
    from veilnet.confidential import dev_public_key_hex, load_or_create_dev_key

    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "veilnet", "confidential-proxy", "--gateway", f"{status['gateway_url']}/v1",
         "--port", str(port), "--policy", str(data / "attestation-policy.json"),
         "--dev-enclave-key", dev_public_key_hex(load_or_create_dev_key(data / "dev-enclave.key"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=status["api_key"], max_retries=0)
        deadline = time.monotonic() + 30
        while True:
            try:
                stream = sdk.chat.completions.create(model="SmolLM2-135M-Instruct", max_tokens=8, messages=hello,
                                                     stream=True)
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise
                time.sleep(0.3)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
