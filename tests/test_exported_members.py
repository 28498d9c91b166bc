"""Every veilnet module imports cleanly and everything named in its ``__all__`` exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import veilnet

SKIP = {"veilnet.__main__", "veilnet.store.migrations.env"}


def _modules() -> list[str]:
    names = ["veilnet"]
    for info in pkgutil.walk_packages(veilnet.__path__, prefix="veilnet."):
        if info.name in SKIP or ".migrations.versions." in info.name:
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_module_exports_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names missing members: {missing}"
