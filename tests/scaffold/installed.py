"""Making a scaffolded task package importable and discoverable without touching the shared venv: its
``src`` on a path plus an importlib.metadata dist-info (METADATA, entry_points.txt) beside it, as pip writes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from veilnet.scaffold import TaskSpec
from veilnet.tasks.registry import installed_tasks


def write_dist_info(spec: TaskSpec, site: Path) -> Path:
    info = site / f"{spec.module}-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {spec.distribution}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        f"[veilnet.tasks]\n{spec.name} = {spec.module}.task:{spec.class_prefix}Task\n")
    return info


@contextlib.contextmanager
def installed(spec: TaskSpec, package: Path, site: Path) -> Iterator[None]:
    """The package importable and its entry point found in this process, for the ``with`` block."""
    write_dist_info(spec, site)
    paths = [str(package / "src"), str(site)]
    sys.path[:0] = paths
    installed_tasks.cache_clear()
    try:
        yield
    finally:
        for path in paths:
            sys.path.remove(path)
        for name in [m for m in sys.modules if m == spec.module or m.startswith(spec.module + ".")]:
            del sys.modules[name]
        installed_tasks.cache_clear()
