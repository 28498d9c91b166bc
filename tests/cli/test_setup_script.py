"""scripts/setup knows when .venv is up to date, so scripts/test does not reinstall when nothing changed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setup(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(tree / "scripts" / "setup"), *args], capture_output=True, text=True,
                          timeout=30, check=False)


def test_setup_reinstalls_only_when_its_inputs_changed(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup", tmp_path / "scripts" / "setup")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)

    assert setup(tmp_path, "--check").returncode == 1  # no install ever finished here
    stamp = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes() + (tmp_path / "scripts" / "setup").read_bytes())
    (tmp_path / ".venv" / ".setup-stamp").write_text(stamp.hexdigest() + "\n")
    assert setup(tmp_path, "--check").returncode == 0
    unchanged = setup(tmp_path, "--if-changed")
    assert unchanged.returncode == 0 and "up to date" in unchanged.stdout and "installing" not in unchanged.stdout

    with (tmp_path / "pyproject.toml").open("a") as handle:
        handle.write("\n# a new dependency\n")
    changed = setup(tmp_path, "--check")
    assert changed.returncode == 1 and "needs scripts/setup" in changed.stdout
    assert setup(tmp_path, "--bogus").returncode == 2


def test_the_test_script_installs_only_if_changed() -> None:
    assert "scripts/setup --if-changed\n" in (ROOT / "scripts" / "test").read_text()
