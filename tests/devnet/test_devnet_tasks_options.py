"""``--task`` on a devnet: what miners are told to serve, what validators load and challenge, and a recorded
devnet refusing to resume as another subnet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veilnet.devnet.options import DevnetOptions, MinerSpec
from veilnet.devnet.runtime import DevnetRuntime
from veilnet.devnet.services import Launcher, reference_models, validator_tasks
from veilnet.devnet.up import _plan
from veilnet.errors import ConfigError
from veilnet.settings import Settings


def plan(tmp_path: Path, tasks: tuple[str, ...] | None) -> DevnetRuntime:
    settings = Settings()
    settings.devnet.data_dir = tmp_path / "devnet"
    return _plan(settings, DevnetOptions(miners=2, tasks=tasks))


def test_miners_serve_the_chosen_tasks_and_validators_load_only_what_they_need(tmp_path: Path) -> None:
    only_ocr = plan(tmp_path / "a", ("ocr", "orientation"))
    assert [m.tasks for m in only_ocr.miners()] == [["ocr", "orientation"]] * 2
    assert reference_models(only_ocr) == []  # no chat, no detection: the validators load no language model
    assert validator_tasks(only_ocr) == ["ocr", "orientation"]
    env = Launcher(only_ocr, ready_timeout=1, engines_on_host=1)._miner_env(only_ocr.miners()[0])
    assert json.loads(env["VEILNET_MINER__TASKS"]) == ["ocr", "orientation"]
    assert "VEILNET_MINER__EMBEDDING_MODELS" not in env and "VEILNET_CONFIDENTIAL__ENCLAVE" not in env

    detection = plan(tmp_path / "b", ("ai-detection",))
    assert reference_models(detection) == ["SmolLM2-135M-Instruct", "gemma-3-270m"]  # the writers

    chat = plan(tmp_path / "c", None)
    assert [m.tasks for m in chat.miners()] == [["chat"], ["chat"]]
    assert reference_models(chat) == ["SmolLM2-135M-Instruct"] and validator_tasks(chat) == []


def test_a_task_not_installed_is_refused_naming_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match="no installed task is called 'sentiment'; installed: ai-detection"):
        MinerSpec(tasks=("sentiment",))
    with pytest.raises(ConfigError, match="at least one task"):
        MinerSpec(tasks=())
    assert not MinerSpec(tasks=("ocr",)).embeds and MinerSpec(tasks=("chat", "ocr")).embeds


def test_a_recorded_devnet_resumes_only_with_the_tasks_it_has(tmp_path: Path) -> None:
    runtime = plan(tmp_path, ("ocr",))
    DevnetOptions(tasks=("ocr",)).check_against(runtime)
    DevnetOptions().check_against(runtime)  # left out: it keeps what it has
    with pytest.raises(ConfigError, match=r"--task chat \(it has ocr\)"):
        DevnetOptions(tasks=("chat",)).check_against(runtime)
