"""``veilnet new-task``: the scaffold from a spec file or from answers, its own tests passing once it is
installed (a dist-info with its entry point), veilnet finding it, and clear errors for bad answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.scaffold.installed import installed, write_dist_info
from veilnet.cli import app
from veilnet.scaffold import load_spec
from veilnet.tasks.registry import installed_tasks

SPEC = """
description = "Statistics of a text"
verification = "known_truth"
inputs = [{name = "text", type = "string"}, {name = "limit", type = "integer"}]
outputs = [{name = "label", type = "string"}, {name = "score", type = "number"}, {name = "long", type = "boolean"}]
"""


def scaffold(tmp_path: Path, name: str, spec_text: str = SPEC, suffix: str = ".toml") -> Path:
    spec = tmp_path / f"spec{suffix}"
    spec.write_text(spec_text)
    target = tmp_path / name
    result = CliRunner().invoke(app, ["new-task", name, "--spec", str(spec), "--dir", str(target)])
    assert result.exit_code == 0, result.output
    return target


def run_own_tests(package: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package / "src"), str(site)])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                          cwd=package, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("verification", ["known_truth", "reference", "similarity"])
def test_the_scaffold_passes_its_own_tests(tmp_path: Path, verification: str) -> None:
    package = scaffold(tmp_path, "text-stats", SPEC.replace('"known_truth"', f'"{verification}"'))
    assert (package / "pyproject.toml").read_text().count('text-stats = "veilnet_task_text_stats.task:TextStatsTask"') == 1
    write_dist_info(load_spec(tmp_path / "spec.toml", "text-stats"), tmp_path / "site")
    result = run_own_tests(package, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 passed" in result.stdout


def test_veilnet_finds_the_installed_task_and_it_verifies(tmp_path: Path) -> None:
    package = scaffold(tmp_path, "text-stats")
    spec = load_spec(tmp_path / "spec.toml", "text-stats")
    assert "text-stats" not in installed_tasks()
    with installed(spec, package, tmp_path / "site"):
        task = installed_tasks()["text-stats"]
        assert task.miner_path == task.gateway_route == "/v1/tasks/text-stats"
        assert {"chat", "ocr", "ai-detection", "orientation", "embeddings"} <= set(installed_tasks())
    assert "text-stats" not in installed_tasks()


def test_answers_given_interactively(tmp_path: Path) -> None:
    target = tmp_path / "pkg"
    answers = "Doubles numbers\nx:number\ndouble:number\nguess\nsimilarity\n"
    result = CliRunner().invoke(app, ["new-task", "doubler", "--dir", str(target)], input=answers)
    assert result.exit_code == 0, result.output
    assert "verification must be one of" in result.output  # "guess" was refused and asked again
    task = (target / "src" / "veilnet_task_doubler" / "task.py").read_text()
    assert 'VERIFICATION = "similarity"' in task and "x=round(rng.uniform" in task


@pytest.mark.parametrize(("spec_text", "suffix", "message"), [
    ('inputs = [{name = "model"}]\noutputs = [{name = "y"}]', ".toml", "taken by the documents"),
    ('{"inputs": [{"name": "x", "type": "complex"}], "outputs": [{"name": "y"}]}', ".json", "inputs.0.type"),
    ('inputs = []\noutputs = [{name = "y"}]', ".toml", "at least one input"),
    ("inputs = [", ".toml", "not valid TOML"),
])
def test_bad_specs_are_refused_with_what_is_wrong(tmp_path: Path, spec_text: str, suffix: str, message: str) -> None:
    spec = tmp_path / f"spec{suffix}"
    spec.write_text(spec_text)
    result = CliRunner().invoke(app, ["new-task", "demo", "--spec", str(spec), "--dir", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_a_bad_name_and_a_full_directory_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["new-task", "Not_Valid", "--dir", str(tmp_path / "a")])
    assert result.exit_code == 1 and "must be lower case" in result.output
    package = scaffold(tmp_path, "text-stats")
    again = CliRunner().invoke(app, ["new-task", "text-stats", "--spec", str(tmp_path / "spec.toml"),
                                     "--dir", str(package)])
    assert again.exit_code == 1 and "is not empty" in again.output


def test_the_scaffold_is_lint_clean_and_strictly_typed(tmp_path: Path) -> None:
    package = scaffold(tmp_path, "text-stats", SPEC.replace('"known_truth"', '"similarity"'))
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E,F,I,UP,B", "src", "tests"],
                          cwd=package, capture_output=True, text=True, timeout=120, check=False)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    mypy = subprocess.run([sys.executable, "-m", "mypy", "src", "tests"], cwd=package, capture_output=True,
                          text=True, timeout=600, check=False)
    assert mypy.returncode == 0 and "Success" in mypy.stdout, mypy.stdout + mypy.stderr
