"""`devnet up` with miners that relay to an OpenAI-compatible upstream (a real llama.cpp HTTP server), and
`devnet logs` of its services. (`devnet add-miner`: tests/devnet/test_devnet_keep.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from veilnet.models.catalog import model_path
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


@pytest.fixture
def llama_server(tmp_path: Path) -> Iterator[str]:
    """llama.cpp's own OpenAI-compatible HTTP server (xllamacpp listening on a loopback port) serving SmolLM2."""
    import xllamacpp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path(MODEL, tmp_path))
    params.n_ctx = 2048
    params.n_parallel = 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    params.warmup = False
    params.verbosity = -1
    params.port = port
    server = xllamacpp.Server(params)
    yield f"{server.listening_address}/v1"
    del server


def test_upstream_miners_and_an_added_miner(tmp_path: Path, llama_server: str) -> None:
    data = tmp_path / "devnet"
    up = veilnet("devnet", "up", "--detach", "--miners", "1", "--backend", "openai", "--upstream-url", llama_server,
                 "--model", MODEL, "--block-time", "0.25", "--tempo", "20", "--data-dir", str(data))
    try:
        assert up.returncode == 0, up.stderr
        first = status(data)
        miner = next(n for n in first["neurons"] if n["role"] == "miner")
        assert (miner["backend"], miner["model"], miner["threads"]) == ("openai", MODEL, None)
        validator = next(n for n in first["neurons"] if n["role"] == "validator")
        assert validator["threads"] == engine_threads(None, 1)  # the only llama.cpp engine of the devnet
        client = openai.OpenAI(base_url=f"{first['gateway_url']}/v1", api_key=first["api_key"], max_retries=0)
        answer = client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content  # relayed by miner-0 to the llama.cpp server

        logs = veilnet("devnet", "logs", "miner-0", "-n", "50", "--data-dir", str(data))
        assert logs.returncode == 0 and "miner serving" in logs.stdout and "miner-0 |" not in logs.stdout
        every = veilnet("devnet", "logs", "-n", "1", "--data-dir", str(data)).stdout.splitlines()
        assert [line.split("|")[0].strip() for line in every] == ["chain", "gateway", "miner-0", "redis", "validator-0"]
    finally:
        veilnet("devnet", "down", "--data-dir", str(data))
