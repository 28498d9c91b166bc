"""The adversarial market simulator (veilnet sim): every cheating strategy loses against the real challenge
generators, verifiers (recorded real verdicts and readings), scoring and exact epoch, for every task it
applies to (chat, embeddings, AI-content detection, OCR, orientation); hotkeys splitting one backend earn no
more than the backend (served in turn too: every probe round is a window); a copier validator earns less per
unit stake than the validators it copies; the command prints the table and writes the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veilnet.cli import app
from veilnet.errors import ConfigError
from veilnet.sim.adversarial import COPIER, MarketConfig, applicable, run_market, strategy_named
from veilnet.sim.answers import CHAT_VERDICTS, DETECTION_RECORDS, EMBEDDINGS_VERDICTS, OCR_READINGS, TASKS

CHEATS = [(task, cheat) for task in TASKS for cheat in applicable(task) if not cheat.startswith("sybil-")]


@pytest.mark.parametrize(("task", "cheat"), CHEATS)
def test_honest_miners_keep_95_percent_within_10_epochs(task: str, cheat: str) -> None:
    """3 of 10 hotkeys cheat (30 %); by the 10th epoch the honest hotkeys get >= 95 % of miner emission."""
    outcome = run_market(MarketConfig(task=task, miners=10, cheaters=0.3, epochs=10, seed=1), cheat)
    honest, cheater = outcome.shares["honest"], outcome.shares[cheat]
    assert honest[-1] >= 0.95, (task, cheat, honest)
    assert cheater[-1] <= 0.05, (task, cheat, cheater)
    assert outcome.fair[cheat] > 0.2  # serving honestly, the cheaters' backends would have earned > 20 %


@pytest.mark.parametrize("task", TASKS)
def test_sybil_hotkeys_earn_no_more_than_their_one_backend(task: str) -> None:
    """Three hotkeys in front of one backend: together, on average over seeds, within 5 % of the backend's fair
    share (what one hotkey serving it earns), and the honest miners keep >= 95 % of theirs in every run."""
    ratios = []
    for seed in range(4):
        outcome = run_market(MarketConfig(task=task, miners=10, cheaters=0.3, epochs=10, seed=seed), "sybil-3")
        ratios.append(outcome.shares["sybil-3"][-1] / outcome.fair["sybil-3"])
        assert outcome.shares["honest"][-1] >= 0.95 * outcome.fair["honest"], outcome.shares
    assert sum(ratios) / len(ratios) <= 1.05, ratios


@pytest.mark.parametrize("task", TASKS)
def test_sybil_hotkeys_served_in_turn_earn_no_more_than_their_one_backend(task: str) -> None:
    """Served in turn, three hotkeys deliver in a round's window what their backend does, for every task (the
    tasks besides chat and embeddings fed from drawn challenges); read to each hotkey's last answer the order
    would pay them 1 + 1/2 + 1/3 of it (tests/test_scoring.py)."""
    for seed in range(2):
        outcome = run_market(MarketConfig(task=task, miners=10, cheaters=0.3, epochs=10, seed=seed), "sybil-turn-3")
        assert outcome.shares["sybil-turn-3"][-1] <= 1.05 * outcome.fair["sybil-turn-3"], outcome.shares
        assert outcome.shares["honest"][-1] >= 0.95 * outcome.fair["honest"], outcome.shares


def test_a_copier_validator_earns_less_than_the_validators_it_copies() -> None:
    outcome = run_market(MarketConfig(task="chat", epochs=10, seed=3), COPIER)
    assert outcome.copier_ratio is not None and outcome.copier_ratio < 0.9, outcome.copier_ratio
    assert outcome.shares["honest"][-1] == 1.0


def test_all_honest_miners_are_paid_by_their_throughput() -> None:
    """Without cheaters nothing is lost: the miners share all emission, in line with what they serve."""
    outcome = run_market(MarketConfig(task="chat", cheaters=0.0, epochs=6, seed=4), "honest")
    assert outcome.shares["honest"][-1] == pytest.approx(1.0)


def test_a_lone_cheater_loses_too() -> None:
    outcome = run_market(MarketConfig(task="chat", miners=5, cheaters=0.2, epochs=10, seed=5), "selective")
    assert outcome.shares["selective"][-1] <= 0.05, outcome.shares


def test_the_recorded_tables_come_from_real_runs() -> None:
    """Provenance is recorded; every honest chat verdict passed, every inflated one failed (the real verifier's
    verdicts); every recorded honest OCR reading is close to its picture's text."""
    chat = json.loads(CHAT_VERDICTS.read_text(encoding="utf-8"))
    assert "verify_chat_answer" in chat["provenance"]
    assert all(row["ok"] for row in chat["verdicts"]["honest"])
    assert not any(row["ok"] for row in chat["verdicts"]["inflate-usage"])
    assert all(row["ok"] for row in chat["verdicts"]["cache"])  # each passes alone; the series test catches them
    embeddings = json.loads(EMBEDDINGS_VERDICTS.read_text(encoding="utf-8"))
    assert "verify_embeddings_answer" in embeddings["provenance"]
    assert all(row["ok"] for row in embeddings["verdicts"]["honest"])
    assert not any(row["ok"] for name in ("empty", "cache", "substitute") for row in embeddings["verdicts"][name])
    detection = json.loads(DETECTION_RECORDS.read_text(encoding="utf-8"))
    assert "TokenStatsDetectionEngine" in detection["provenance"] and len(detection["records"]) >= 12
    assert {True, False} <= {t for row in detection["records"] for t in row["truth"]}
    ocr = json.loads(OCR_READINGS.read_text(encoding="utf-8"))
    assert "RapidOcrEngine" in ocr["provenance"] and len(ocr["readings"]) >= 20


def test_unknown_strategies_and_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'lazy'"):
        strategy_named("lazy")
    with pytest.raises(ConfigError, match="sybil-1"):
        strategy_named("sybil-1")
    assert strategy_named("sybil-4").sybil == 4 and not strategy_named("sybil-4").in_turn
    assert strategy_named("sybil-turn-2").in_turn
    with pytest.raises(ConfigError):
        MarketConfig(miners=1)
    assert "inflate-usage" not in applicable("ocr") and "inflate-usage" in applicable("chat")


def test_the_command_prints_the_table_and_writes_the_png(tmp_path: Path) -> None:
    png = tmp_path / "sim.png"
    result = CliRunner().invoke(app, ["sim", "--task", "chat", "--strategy", "empty", "--strategy", "sybil-2",
                                      "--epochs", "5", "--miners", "6", "--cheaters", "0.34", "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "share of miner emission per epoch" in result.output and "empty" in result.output
    assert "sybil-2" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_refuses_what_does_not_apply() -> None:
    result = CliRunner().invoke(app, ["sim", "--task", "ocr", "--strategy", "inflate-usage"])
    assert result.exit_code != 0 and "does not apply to task 'ocr'" in result.output
    result = CliRunner().invoke(app, ["sim", "--task", "chat", "--task", "video"])
    assert result.exit_code != 0 and "unknown task 'video'" in result.output
    assert "chat: " not in result.output  # every name is checked before anything runs
    result = CliRunner().invoke(app, ["sim", "--strategy", "sybil-x"])
    assert result.exit_code != 0 and "unknown strategy 'sybil-x'" in result.output
    result = CliRunner().invoke(app, ["sim", "--epochs", "0"])
    assert result.exit_code != 0 and "epochs must be at least 1, got 0" in result.output
