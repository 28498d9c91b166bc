from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veilnet.cli import app

SCENARIO = {
    "n": 8,
    "current_block": 1,
    "tempo": 1,
    "activity_cutoff": 13,
    "last_mechanism_step_block": 0,
    "stake": [1, 2, 3, 4, 0, 0, 0, 0],
    "last_update": [1, 1, 1, 1, 0, 0, 0, 0],
    "block_at_registration": [0] * 8,
    "validator_permit": [True] * 4 + [False] * 4,
    "weights": [[[4, 16383], [5, 32767], [6, 49149], [7, 65535]]] * 4 + [[]] * 4,
    "bonds": [[]] * 8,
    "kappa": 32767,
    "bonds_penalty": 65535,
    "bonds_moving_average": 900000,
    "max_allowed_validators": 8,
    "yuma3": False,
    "liquid_alpha": False,
    "alpha_low": 45875,
    "alpha_high": 58982,
    "alpha_sigmoid_steepness": 1000,
    "rao_emission": 1_000_000_000,
}


def _run(tmp_path: Path, scenario: object) -> tuple[int, str]:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    result = CliRunner().invoke(app, ["chain", "epoch", "--input", str(path)])
    return result.exit_code, result.output


def test_epoch_tool_prints_subtensor_numbers(tmp_path: Path) -> None:
    code, output = _run(tmp_path, SCENARIO)
    assert code == 0, output
    result = json.loads(output)
    assert [row[0][1] for row in result["bonds"][:4]] == [16383, 32767, 49151, 65535]
    assert [s + v for s, v in zip(result["server_emission"], result["validator_emission"], strict=True)] == [
        49999998, 99999999, 150000000, 200000001, 49998779, 100000610, 149996337, 200004272,
    ]
    assert set(result) == {
        "incentive", "dividends", "consensus", "validator_trust", "bonds",
        "server_emission", "validator_emission", "validator_permit",
    }


def test_epoch_tool_reads_stdin() -> None:
    result = CliRunner().invoke(app, ["chain", "epoch", "--input", "-"], input=json.dumps(SCENARIO))
    assert result.exit_code == 0
    assert json.loads(result.output)["validator_permit"] == [True] * 4 + [False] * 4


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"surprise": 1}, "surprise"),
        ({"stake": [1, 2, 3]}, "stake"),
        ({"weights": [[[9, 1]]] + [[]] * 7}, "weights"),
        ({"weights": [[[4, 70000]]] + [[]] * 7}, "weights"),
        ({"kappa": -1}, "kappa"),
        ({"yuma3": "yes"}, "yuma3"),
        ({"validator_permit": [1] * 8}, "validator_permit"),
    ],
)
def test_bad_scenarios_name_the_field(tmp_path: Path, change: dict[str, object], field: str) -> None:
    code, output = _run(tmp_path, {**SCENARIO, **change})
    assert code == 1
    assert field in output
    assert "Traceback" not in output


def test_missing_key_and_bad_json(tmp_path: Path) -> None:
    scenario = dict(SCENARIO)
    del scenario["tempo"]
    code, output = _run(tmp_path, scenario)
    assert code == 1 and "tempo" in output
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = CliRunner().invoke(app, ["chain", "epoch", "--input", str(path)])
    assert result.exit_code == 1 and "not valid JSON" in result.output
    result = CliRunner().invoke(app, ["chain", "epoch", "--input", str(tmp_path / "none.json")])
    assert result.exit_code == 1 and "cannot read" in result.output
