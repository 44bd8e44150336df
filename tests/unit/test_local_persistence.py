"""`local.persistence`: what counts as a change, the pause, the pickling of locks, the atomic file and
its refusal of other versions, the snapshot cadence (the moto and emulator round trips are in
tests/integration/test_local_state_round_trip.py, the restart itself in tests/e2e/test_runtime_restart.py)."""

from __future__ import annotations

import io
import json
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from local import persistence
from local.persistence import Gate, Snapshot, Snapshotter, StateError, StateStore, changes_state, dumps

MOTO_VERSION = "5.test"  # no moto in unit tests: the store compares with whatever `_moto_version` says


@pytest.fixture(autouse=True)
def _moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persistence, "_moto_version", lambda: MOTO_VERSION)


def _environ(method: str = "POST", target: str | None = None) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method}
    if target:
        environ["HTTP_X_AMZ_TARGET"] = target
    return environ


@pytest.mark.parametrize(
    ("environ", "changes"),
    [
        (_environ("GET"), False),
        (_environ("HEAD"), False),
        (_environ("PUT"), True),  # S3 put_object
        (_environ("DELETE"), True),
        (_environ("POST"), True),  # an emulator's create, upload, cancel
        (_environ("POST", "DynamoDB_20120810.Query"), False),
        (_environ("POST", "DynamoDB_20120810.GetItem"), False),
        (_environ("POST", "DynamoDB_20120810.TransactWriteItems"), True),
        (_environ("POST", "DynamoDB_20120810.UpdateItem"), True),
        (_environ("POST", "AmazonSQS.GetQueueAttributes"), False),
        (_environ("POST", "AmazonSQS.ReceiveMessage"), True),  # receive counts and visibility change
        (_environ("POST", "AmazonSQS.SendMessage"), True),
    ],
)
def test_which_requests_change_state(environ: dict[str, Any], changes: bool) -> None:
    assert changes_state(environ) is changes


def _app(seen: list[str], hold: threading.Event | None = None) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["REQUEST_METHOD"])
        if hold is not None:
            hold.wait(5)
        return [b"ok"]

    return app


def test_the_gate_counts_changes_only() -> None:
    gate = Gate(_app([]))
    assert gate(_environ("GET"), None) == [b"ok"]
    gate(_environ("POST", "DynamoDB_20120810.PutItem"), None)
    gate(_environ("POST", "DynamoDB_20120810.Scan"), None)
    assert gate.changes == 1


def test_a_pause_waits_for_requests_in_progress_and_holds_new_ones() -> None:
    seen: list[str] = []
    release = threading.Event()
    gate = Gate(_app(seen, release))
    slow = threading.Thread(target=gate, args=(_environ("PUT"), None))
    slow.start()
    while not seen:
        time.sleep(0.01)
    paused = threading.Event()

    def pause() -> None:
        with gate.paused():
            paused.set()
            time.sleep(0.2)
            seen.append("snapshot")

    pauser = threading.Thread(target=pause)
    pauser.start()
    time.sleep(0.1)
    assert not paused.is_set()  # the request in progress finishes first
    release.set()
    assert paused.wait(5)
    late = threading.Thread(target=gate, args=(_environ("DELETE"), None))
    late.start()  # arrives during the pause: runs after it
    for thread in (slow, pauser, late):
        thread.join(5)
    assert seen == ["PUT", "snapshot", "DELETE"]


class _WithLocks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rlock = threading.RLock()
        self.condition = threading.Condition()
        self.items = {"a": 1}


def test_locks_and_conditions_pickle_as_new_unlocked_ones() -> None:
    original = _WithLocks()
    original.lock.acquire()  # held while the snapshot is taken
    with pytest.raises(TypeError):
        pickle.dumps(original)
    copy = pickle.loads(dumps(original))
    assert copy.items == {"a": 1}
    assert copy.lock.acquire(blocking=False)
    assert copy.rlock.acquire(blocking=False)
    with copy.condition:
        copy.condition.notify_all()


def _snapshot(**overrides: Any) -> Snapshot:
    fields: dict[str, Any] = {
        "format": persistence.FORMAT,
        "moto_version": MOTO_VERSION,
        "python_version": __import__("platform").python_version(),
        "saved_at": 1.0,
        "moto": {},
        "ports": {"cloudinary": 1234},
    }
    return Snapshot(**{**fields, **overrides})


def test_the_store_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "data")
    assert store.load() is None  # nothing saved yet: a fresh state
    store.save(dumps(_snapshot()))
    store.save(dumps(_snapshot(saved_at=2.0)))
    loaded = store.load()
    assert loaded is not None and loaded.saved_at == 2.0 and loaded.ports == {"cloudinary": 1234}
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == ["state.pickle"]  # no temporary left
    assert store.path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage", "cannot be read"),
        (pickle.dumps({"not": "a snapshot"}), "is not a state this runtime wrote"),
        (dumps(_snapshot(moto_version="0.0.1")), "was written by moto 0.0.1"),
        (dumps(_snapshot(format=99)), "is not a state this runtime wrote"),
    ],
)
def test_a_state_this_runtime_cannot_load_is_refused(tmp_path: Path, data: bytes, message: str) -> None:
    store = StateStore(tmp_path)
    store.path.write_bytes(data)
    with pytest.raises(StateError, match=message) as raised:
        store.load()
    assert "to start with a fresh state" in str(raised.value)


def test_a_failed_write_keeps_the_previous_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path)
    store.save(b"first")

    def broken(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(persistence.os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save(b"second")
    assert store.path.read_bytes() == b"first"
    assert [path.name for path in tmp_path.iterdir()] == ["state.pickle"]


def test_the_snapshotter_writes_only_after_changes_and_always_on_stop(tmp_path: Path) -> None:
    gate = Gate(_app([]))
    captured: list[int] = []

    def capture() -> Snapshot:
        captured.append(gate.changes)
        return _snapshot(saved_at=float(len(captured)))

    snapshots = Snapshotter(StateStore(tmp_path), {"moto": gate}, capture, interval=60)
    assert snapshots.snapshot() is True  # the first one
    assert snapshots.snapshot() is False  # nothing changed
    gate(_environ("POST", "DynamoDB_20120810.Scan"), None)
    assert snapshots.snapshot() is False  # a read changes nothing
    gate(_environ("POST", "DynamoDB_20120810.PutItem"), None)
    assert snapshots.snapshot() is True
    snapshots.start()
    snapshots.stop()  # the last one, forced
    assert captured == [0, 1, 1]
    loaded = StateStore(tmp_path).load()
    assert loaded is not None and loaded.saved_at == 3.0


def test_a_port_in_use_is_not_reused() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert persistence.port_is_free("127.0.0.1", taken.getsockname()[1]) is False
    assert persistence.port_is_free("127.0.0.1", 0) is False  # no saved port: the OS picks one


class _FakeSqs:
    """Answers ReceiveMessage like moto's JSON protocol: `{}` when empty, `{"Messages": [...]}` else."""

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.waits: list[Any] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        if environ["HTTP_X_AMZ_TARGET"].endswith("SendMessage"):
            self.queue.append(body["MessageBody"])
            answer = b'{"MessageId": "1"}'
        else:
            self.waits.append(body.get("WaitTimeSeconds"))
            answer = json.dumps({"Messages": [{"Body": self.queue.pop(0)}]} if self.queue else {}).encode()
        start_response("200 OK", [("Content-Length", str(len(answer)))])
        return [answer]


def _sqs_call(gate: Gate, action: str, body: dict[str, Any]) -> tuple[str, bytes]:
    data = json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "HTTP_X_AMZ_TARGET": f"AmazonSQS.{action}",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    status: list[str] = []
    out = b"".join(gate(environ, lambda s, h, e=None: status.append(s)))
    return status[0], out


def test_a_long_poll_is_served_as_short_polls_so_a_pause_does_not_wait_for_it() -> None:
    sqs = _FakeSqs()
    gate = Gate(sqs)
    results: list[tuple[str, bytes]] = []
    poll = threading.Thread(target=lambda: results.append(_sqs_call(gate, "ReceiveMessage", {"WaitTimeSeconds": 2})))
    started = time.monotonic()
    poll.start()
    time.sleep(0.2)
    with gate.paused():
        paused_after = time.monotonic() - started
    assert paused_after < 0.6  # not the 2 s of the long poll
    _sqs_call(gate, "SendMessage", {"MessageBody": "hello"})
    poll.join(5)
    assert time.monotonic() - started < 1.0  # woken by the send, not at the end of the wait
    assert results == [("200 OK", b'{"Messages": [{"Body": "hello"}]}')]
    assert set(sqs.waits) == {0}  # moto only ever sees short polls
    assert gate.changes == 2  # the send and the receive that got a message


def test_an_empty_long_poll_ends_at_its_wait_and_changes_nothing() -> None:
    gate = Gate(_FakeSqs())
    started = time.monotonic()
    assert _sqs_call(gate, "ReceiveMessage", {"WaitTimeSeconds": 1}) == ("200 OK", b"{}")
    assert 0.9 < time.monotonic() - started < 2.0
    assert gate.changes == 0
