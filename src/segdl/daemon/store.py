"""The queue on disk: one SQLite database (stdlib ``sqlite3``, WAL, ``synchronous=FULL``).

The manager changes items in memory and collects what changed; :meth:`Store.write` commits a
:class:`Batch` in one transaction, and the RPC answers only after that commit returned, so an
acknowledged change survives ``kill -9`` and a power cut. A batch is written by one thread at a
time (the daemon's single database thread), in the order batches were taken.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from segdl.daemon.model import Item, Live, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    gid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    position REAL NOT NULL,
    uris TEXT NOT NULL,
    options TEXT NOT NULL,
    directory TEXT NOT NULL,
    path TEXT,
    size_bytes INTEGER,
    done_bytes INTEGER NOT NULL DEFAULT 0,
    error_code INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    added_s REAL NOT NULL,
    stopped_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS history (
    gid TEXT NOT NULL,
    at_s REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_gid ON history (gid);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Row = tuple[str, str, float, str, str, str, str | None, int | None, int, int, str, float, int]


def row_of(item: Item) -> Row:
    """The item as the row stored for it (taken on the loop thread, written on another)."""
    return (
        item.gid,
        item.status.value,
        item.position,
        json.dumps(item.uris),
        json.dumps(item.options, sort_keys=True),
        item.directory,
        item.path,
        item.live.size_bytes,
        item.live.done_bytes,
        item.error_code,
        item.error_message,
        item.added_s,
        item.stopped_seq,
    )


def item_of(row: Row) -> Item:
    gid, status, position, uris, options, directory, path, size, done = row[:9]
    error_code, error_message, added_s, stopped_seq = row[9:]
    return Item(
        gid=gid,
        uris=list(json.loads(uris)),
        options=dict(json.loads(options)),
        status=Status(status),
        position=position,
        directory=directory,
        path=path,
        error_code=error_code,
        error_message=error_message,
        added_s=added_s,
        stopped_seq=stopped_seq,
        live=Live(done_bytes=done, size_bytes=size),
    )


@dataclass(slots=True)
class Batch:
    """Everything that changed since the last commit."""

    puts: list[Row] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    notes: list[tuple[str, float, str, str]] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes or self.notes or self.settings)


class Store:
    """The database of one state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists()
        # check_same_thread=False: opened on the main thread, then used by the database
        # thread only (the lock makes a misuse harmless rather than corrupting).
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if fresh:
            os.chmod(path, 0o600)  # URLs and headers may carry credentials
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def load(self) -> tuple[list[Item], list[tuple[str, float, str, str]], dict[str, str]]:
        """Every item (queued ones by position, stopped ones in the order they stopped), the
        latest history lines, and the saved settings."""
        with self._lock:
            rows = self._db.execute(
                "SELECT gid, status, position, uris, options, directory, path, size_bytes,"
                " done_bytes, error_code, error_message, added_s, stopped_seq FROM items"
                " ORDER BY stopped_seq, position"
            ).fetchall()
            notes = self._db.execute(
                "SELECT gid, at_s, kind, message FROM history ORDER BY rowid DESC LIMIT 20000"
            ).fetchall()
            settings = dict(self._db.execute("SELECT key, value FROM settings").fetchall())
        notes.reverse()
        return [item_of(row) for row in rows], notes, settings

    def write(self, batch: Batch) -> None:
        """Commit ``batch`` in one transaction (durable when this returns)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if batch.puts:
                    db.executemany(
                        "INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        batch.puts,
                    )
                if batch.deletes:
                    db.executemany("DELETE FROM items WHERE gid = ?", _one(batch.deletes))
                    db.executemany("DELETE FROM history WHERE gid = ?", _one(batch.deletes))
                if batch.notes:
                    db.executemany("INSERT INTO history VALUES (?,?,?,?)", batch.notes)
                if batch.settings:
                    db.executemany(
                        "INSERT OR REPLACE INTO settings VALUES (?,?)", batch.settings.items()
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _one(values: Iterable[str]) -> Iterable[tuple[str]]:
    return ((value,) for value in values)
