"""SQLite persistence of the devnet chain: the whole state as one JSON snapshot, replaced atomically.

A restart reads the snapshot back and continues from the same block. A corrupt or unreadable file is a
:class:`~veilnet.chain.errors.ChainStateCorrupt` naming the file, never a crash.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from pydantic import ValidationError

from veilnet.chain.errors import ChainStateCorrupt
from veilnet.devnet.chain.state import ChainState

__all__ = ["StateFile"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS chain_state (id INTEGER PRIMARY KEY CHECK (id = 1), block INTEGER NOT NULL, state TEXT NOT NULL)"


class StateFile:
    """One SQLite file holding the chain's latest state. Methods are blocking: call them in a thread.

    A save runs to completion in its thread even when the task awaiting it is cancelled (shutdown while a
    block is being saved), so saves and close share a lock: close waits for the save, and a save after
    close is dropped instead of touching a closed connection.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.Lock()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ChainStateCorrupt(f"devnet state file {path} is not a usable SQLite database: {exc}") from exc

    def load(self) -> ChainState | None:
        """The saved state, or None for a new chain."""
        try:
            row = self._db.execute("SELECT block, state FROM chain_state WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ChainStateCorrupt(f"devnet state file {self.path} cannot be read: {exc}") from exc
        if row is None:
            return None
        try:
            state = ChainState.model_validate_json(row[1])
        except (ValidationError, ValueError) as exc:
            raise ChainStateCorrupt(
                f"devnet state file {self.path} holds an unreadable state (block {row[0]}): {exc}; "
                "move it away or run `veilnet devnet reset`"
            ) from exc
        return state

    def save(self, state: ChainState) -> None:
        snapshot = state.model_dump_json()
        with self._mutex:
            if self._closed:
                return
            self._db.execute(
                "INSERT INTO chain_state (id, block, state) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET block = excluded.block, state = excluded.state",
                (state.block, snapshot),
            )

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            self._db.close()
