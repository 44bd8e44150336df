"""`local.persistence.StateStore`: the local runtime's kept state, one row per thing, written before a
change is answered (the moto and emulator hooks that write it: tests/integration/test_local_state_round_trip.py)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from local import persistence
from local.persistence import StateClosed, StateError, StateStore, dumps


def opened(directory: Path) -> StateStore:
    store = StateStore(directory)
    store.open()
    return store


def test_rows_keep_the_latest_state_in_the_order_they_were_first_written(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.write([("t|a", {"v": 1}), ("t|b", {"v": 2})])
    store.write([("t|a", {"v": 3}), ("other|x", "elsewhere")])
    store.write([("t|c", {"v": 4}), ("t|b", None)])  # None: removed
    assert list(store.rows("t|")) == [("t|a", {"v": 3}), ("t|c", {"v": 4})]
    assert store.count() == 3
    store.close()
    again = StateStore(tmp_path)
    assert again.open() is True  # a state from an earlier run
    assert list(again.rows("t|")) == [("t|a", {"v": 3}), ("t|c", {"v": 4})]


def test_a_new_store_is_not_a_restored_one_and_is_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "data")
    assert store.open() is False
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_one_write_is_one_transaction(tmp_path: Path) -> None:
    """A change that cannot be pickled aborts the whole write: nothing of it is kept."""
    store = opened(tmp_path)
    store.write([("t|a", 1)])
    with pytest.raises((TypeError, pickle.PicklingError, AttributeError)):
        store.write([("t|a", 2), ("t|b", lambda: None)])
    assert list(store.rows("t|")) == [("t|a", 1)]


def _write_then_die(directory: str, ready: object) -> None:
    store = StateStore(Path(directory))
    store.open()
    for n in range(200):
        store.write([(f"t|{n}", n), ("t|count", n)])
    ready.set()  # type: ignore[attr-defined]
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no exit handlers: as `kill -9`


def test_every_returned_write_survives_a_kill_of_the_process(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_write_then_die, args=(str(tmp_path), ready))
    child.start()
    child.join(60)
    assert ready.is_set() and child.exitcode == -signal.SIGKILL
    store = opened(tmp_path)
    rows = dict(store.rows("t|"))
    assert rows.pop("t|count") == 199
    assert rows == {f"t|{n}": n for n in range(200)}


def test_a_closed_store_refuses_writes_so_they_are_not_answered(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.close()
    with pytest.raises(StateClosed):
        store.write([("t|a", 1)])


def test_close_waits_for_a_write_in_progress(tmp_path: Path) -> None:
    store = opened(tmp_path)
    events: list[str] = []
    with store.lock:  # a change being made and written
        closer = threading.Thread(target=lambda: (store.close(), events.append("closed")))
        closer.start()
        closer.join(0.2)
        store.write([("t|a", 1)])
        events.append("written")
    closer.join(5)
    assert events == ["written", "closed"]


def test_a_state_from_other_versions_is_refused_with_a_way_out(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.close()
    with sqlite3.connect(tmp_path / persistence.STATE_FILE) as db:
        db.execute("UPDATE meta SET value = '0.0.1' WHERE name = 'moto'")
    with pytest.raises(StateError, match="moto 0.0.1 .* to start with a fresh state"):
        StateStore(tmp_path).open()


def test_a_file_that_is_not_a_state_is_refused(tmp_path: Path) -> None:
    (tmp_path / persistence.STATE_FILE).write_bytes(b"not a database, " * 100)
    with pytest.raises(StateError, match="cannot be read"):
        StateStore(tmp_path).open()


def test_a_snapshot_of_an_earlier_runtime_is_refused_not_ignored(tmp_path: Path) -> None:
    (tmp_path / persistence.PICKLED_STATE_FILE).write_bytes(b"old")
    with pytest.raises(StateError, match="earlier version"):
        StateStore(tmp_path).open()
    assert (tmp_path / persistence.PICKLED_STATE_FILE).read_bytes() == b"old"  # left for the user to decide


class _WithLocks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rlock = threading.RLock()
        self.condition = threading.Condition()
        self.items = {"a": 1}


def test_locks_and_conditions_pickle_as_new_unlocked_ones() -> None:
    original = _WithLocks()
    original.lock.acquire()  # held while the change is written
    with pytest.raises(TypeError):
        pickle.dumps(original)
    copy = pickle.loads(dumps(original))
    assert copy.items == {"a": 1}
    assert copy.lock.acquire(blocking=False)
    assert copy.rlock.acquire(blocking=False)
    with copy.condition:
        copy.condition.notify_all()


def test_a_port_in_use_is_not_reused() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert persistence.port_is_free("127.0.0.1", taken.getsockname()[1]) is False
    assert persistence.port_is_free("127.0.0.1", 0) is False  # no saved port: the OS picks one
