"""tests/data holds public evidence byte-for-byte as its README says: every file is listed in SHA256SUMS with
its digest, and every file there is described in the README."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.conftest import DATA_DIR


def _listed() -> dict[str, str]:
    lines = (DATA_DIR / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def test_every_data_file_matches_its_recorded_digest() -> None:
    listed = _listed()
    present = {str(p.relative_to(DATA_DIR)) for p in DATA_DIR.rglob("*")
               if p.is_file() and p.parts[len(DATA_DIR.parts)] in ("attestation", "chain")}
    assert present == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name


def test_every_data_file_has_its_provenance_in_the_readme() -> None:
    readme = (DATA_DIR / "README.md").read_text()
    for name in _listed():
        stem = Path(name).name.removesuffix("_collateral.json").removesuffix(".gz")
        assert stem in readme, f"{name} is not described in tests/data/README.md"
