"""The local runtime's state on disk: every write the runtime has acknowledged survives `kill -9`.

What is kept, in `LOCAL_DATA_DIR/state.sqlite3` (default `.local-data/`, on unless `LOCAL_PERSIST=0`),
one row per thing, each the latest state of it:
- moto's DynamoDB items, S3 objects and SQS messages (waiting, delayed or in flight, with their receive
  count and visibility deadline), written by `local.moto_journal`'s hooks on moto's backends;
- the Gemini emulator's jobs (on their wall-clock timeline), files and the prompts it has seen, and the
  Cloudinary emulator's assets, written by the emulators themselves (`on_change`);
- the ports moto and the emulators listened on, so that URLs kept in the state (image URLs point at the
  Cloudinary emulator) still work after a restart when the same port is free again.
Tables, buckets, queues and their settings are not rows: the runtime provisions them at every start.

Why this design. The runtime used to pickle moto's whole state every second (more under load: the
interval stretched to four times the last snapshot's duration, and each pause held moto for 1-10 s),
so a `kill -9` lost up to several seconds of writes the API had already answered 202 for, and a stop
or a restart cost a whole pickle. Three ways were weighed:
- a write-ahead log of moto's requests, replayed at start: moto's calls are not deterministic on
  replay (SQS message ids and receipt handles, generated ids, timestamps), so a replay would rebuild a
  different state from the one clients were told about;
- a store durable by construction in place of moto: there is none for DynamoDB, S3 and SQS that runs
  without Docker or a JVM download;
- persisting each request's changes before it is answered: chosen. Each change to moto's state is
  written as the new state of the item, object or message it touched (read back from moto under the
  lock moto's own change held, so rows are written in the order the changes were made), in one SQLite
  transaction per request, before moto answers. An acknowledged write is on disk; a DynamoDB
  transaction's items are one SQLite transaction, so a crash never keeps half of one. The cost is a
  row per change (tens of microseconds), never a pause, and restarting reads one row per thing.

Guarantee: SQLite commits in WAL mode with `synchronous=NORMAL`: a committed row is in the operating
system's hands before moto answers, so it survives the runtime process being killed (`kill -9`, an
out-of-memory kill, a crash) at any moment. A power loss or an operating system crash may lose the
last moments (SQLite does not fsync every commit); the state is never corrupted either way. Writes in
progress at the moment of a kill were not acknowledged: their callers see an error and retry (SQS-driven
work comes back after its visibility timeout).

The pickles are tied to the moto and Python versions that wrote them: a state written by other
versions is refused at start with a message saying how to start fresh, never half-loaded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import platform
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("local")

STATE_FILE = "state.sqlite3"
PICKLED_STATE_FILE = "state.pickle"  # what runtimes before the journal wrote (one whole-state snapshot)
FORMAT = "2"
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
_UPSERT_ROW = "INSERT INTO rows (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"


class StateError(Exception):
    """A saved state this runtime cannot load."""


class StateClosed(RuntimeError):
    """The store is closed (the runtime is stopping): a change that cannot be kept must not be answered."""


def _new_condition() -> threading.Condition:
    return threading.Condition()


class _StatePickler(pickle.Pickler):
    """Pickles locks and conditions as new, unlocked ones (moto's queues and S3 keys carry them)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, threading.Condition):
            return _new_condition, ()
        if isinstance(obj, _LOCK_TYPES):
            return (threading.RLock if "RLock" in type(obj).__name__ else threading.Lock), ()
        return NotImplemented


def dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _versions() -> dict[str, str]:
    import moto

    return {"format": FORMAT, "moto": str(moto.__version__), "python": platform.python_version()}


class StateStore:
    """`state.sqlite3` in a directory: one row per kept thing (`key` -> pickled latest state)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        # Held while a change is made and written (`local.moto_journal`), so rows follow the changes' order.
        self.lock = threading.RLock()
        self.writes = 0
        self._db: sqlite3.Connection | None = None

    # ------------------------------------------------------------------------------- open / close
    def open(self) -> bool:
        """Opens (or creates) the store; True when it holds a state from an earlier run."""
        fresh = f"delete {self.directory} (or `make clean-data`) to start with a fresh state"
        if not self.path.exists() and (self.directory / PICKLED_STATE_FILE).exists():
            raise StateError(
                f"{self.directory / PICKLED_STATE_FILE} was written by an earlier version of the local runtime "
                f"(whole-state snapshots); {fresh}"
            )
        existed = self.path.exists()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            saved = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path} cannot be read ({exc}); {fresh}") from exc
        os.chmod(self.path, 0o600)
        versions = _versions()
        if saved and {name: saved.get(name) for name in versions} != versions:
            db.close()
            raise StateError(
                f"{self.path} was written by moto {saved.get('moto')} on Python {saved.get('python')} "
                f"(state format {saved.get('format')}), this is moto {versions['moto']} on Python "
                f"{versions['python']} (format {FORMAT}); {fresh}"
            )
        if not saved:
            db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", versions.items())
        self._db = db
        return existed and bool(saved)

    def close(self) -> None:
        """After this every write raises `StateClosed` (waits for a write in progress to end)."""
        with self.lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    # ---------------------------------------------------------------------------------- writing
    def write(self, changes: Iterable[tuple[str, Any | None]]) -> None:
        """One transaction: each (key, latest state) is stored, each (key, None) removed. Returns once
        committed: the operating system holds it, a kill of this process cannot undo it."""
        rows = [(key, None if value is None else dumps(value)) for key, value in changes]
        if not rows:
            return
        with self.lock:
            db = self._db
            if db is None:
                raise StateClosed("the local runtime is stopping; the change was not kept")
            db.execute("BEGIN")
            try:
                for key, data in rows:
                    if data is None:
                        db.execute("DELETE FROM rows WHERE key = ?", (key,))
                    else:
                        db.execute(_UPSERT_ROW, (key, data))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            self.writes += 1

    def set_meta(self, name: str, value: str) -> None:
        with self.lock:
            if self._db is None:
                raise StateClosed("the store is closed")
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # ---------------------------------------------------------------------------------- reading
    def meta(self, name: str) -> str | None:
        with self.lock:
            if self._db is None:
                return None
            found = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(found[0]) if found else None

    def rows(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """(key, state) of every row whose key starts with `prefix`, in the order they were first written."""
        with self.lock:
            if self._db is None:
                return
            found = self._db.execute(
                "SELECT key, value FROM rows WHERE key >= ? AND key < ? ORDER BY rowid",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        for key, data in found:
            yield key, pickle.loads(data)

    def count(self) -> int:
        with self.lock:
            return int(self._db.execute("SELECT count(*) FROM rows").fetchone()[0]) if self._db else 0

    def last_change(self) -> float | None:
        """When the state last changed (the newest of the database and its write-ahead log)."""
        files = (self.path, self.path.with_name(STATE_FILE + "-wal"))
        times = [path.stat().st_mtime for path in files if path.exists()]
        return max(times) if times else None


def port_is_free(host: str, port: int) -> bool:
    if not port:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
