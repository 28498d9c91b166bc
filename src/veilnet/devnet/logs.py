"""``veilnet devnet logs``: the last lines of the services' log files, and following them as they grow.

Each service appends to ``<data dir>/logs/<service>.log`` across restarts (every start begins with a
``=== <time> start:`` line), so the files outlive the processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from veilnet.errors import ConfigError

__all__ = ["follow", "log_files", "tail"]


def log_files(data_dir: Path, service: str | None = None) -> dict[str, Path]:
    """Service name -> log file, for every service or the one named (a clear error naming the others)."""
    directory = data_dir / "logs"
    files = {path.stem: path for path in sorted(directory.glob("*.log"))} if directory.is_dir() else {}
    if service is None:
        if not files:
            raise ConfigError(f"no devnet logs in {directory}; start a devnet with `veilnet devnet up`")
        return files
    if service not in files:
        known = ", ".join(files) or "none yet"
        raise ConfigError(f"no log for service {service!r} in {directory} (services: {known})")
    return {service: files[service]}


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (read from the end, so a large log costs no more than its tail)."""
    if lines <= 0:
        return []
    with path.open("rb") as handle:
        handle.seek(0, 2)
        position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(64 * 1024, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return data.decode(errors="replace").splitlines()[-lines:]


def follow(files: dict[str, Path], emit: Callable[[str, str], None], *, stop: Callable[[], bool],
           interval: float = 0.25) -> None:
    """Call ``emit(service, line)`` for each line appended to ``files`` from now on, until ``stop()``."""
    offsets = {name: path.stat().st_size for name, path in files.items()}
    partial = dict.fromkeys(files, b"")
    while not stop():
        for name, path in files.items():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[name]:  # truncated or replaced: start over
                offsets[name] = 0
            if size == offsets[name]:
                continue
            with path.open("rb") as handle:
                handle.seek(offsets[name])
                data = partial[name] + handle.read(size - offsets[name])
            offsets[name] = size
            *complete, partial[name] = data.split(b"\n")
            for line in complete:
                emit(name, line.decode(errors="replace"))
        time.sleep(interval)
