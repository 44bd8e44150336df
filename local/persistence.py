"""The local runtime's state on disk: moto's and the emulators' state survive a restart.

What is kept, in `LOCAL_DATA_DIR/state.pickle` (default `.local-data/`, on unless `LOCAL_PERSIST=0`):
- moto's backends of the services the service uses (`PERSISTED_SERVICES`): the DynamoDB table and
  its items, the S3 bucket and its objects, the SQS queues with every message as moto holds it
  (waiting, delayed or in flight, with its receive count and visibility deadline), SES identities;
- the Gemini emulator's jobs (with their wall-clock timeline: a job created at t with a 5 s delay is
  done at t + 5 s, whether or not the runtime ran in between), files and the prompts it has seen;
- the Cloudinary emulator's assets;
- the ports moto and the emulators listened on, so that URLs stored in the state (image URLs point
  at the Cloudinary emulator) still work after a restart when the same port is free again.

How. moto has no persistence of its own (its maintainers suggest pickling the backends:
getmoto/moto#1069, #9755), and re-creating its state through the AWS APIs would lose what those APIs
cannot set: an SQS message's id, receive count and visibility deadline (a message in flight when the
runtime stopped must come back after its visibility timeout with its receive count, so that the
queue's redrive policy still counts right). So the backends are pickled as moto holds them; locks and
conditions inside them are pickled as fresh ones (`_StatePickler`). The pickle is tied to the moto
and Python versions that wrote it: a snapshot written by other versions is refused at start with a
message saying how to start fresh, never half-loaded.

A snapshot is a consistent cut: `Gate` wraps the WSGI app of moto's server and of each emulator and
counts the requests that may change state; moto's gate holds new requests back and waits for those
in progress to finish (`Gate.paused()`) while the snapshot is taken, and each emulator hands over
its state under its own lock (each of its changes is made under that lock; pausing an emulator
would wait for a `[[timeout]]` call held 30 s). Handlers are held back at their next AWS call, so
the emulators' state cannot run ahead of moto's by more than the calls in flight. A cut between two
calls of a handler is what the service already survives (a Lambda dying between two calls; the
fault table in tests/unit/test_fault_table.py walks each such point). Then the pickle is written
atomically (temporary file, fsync, rename): a crash while writing leaves the previous snapshot.

moto's gate serves SQS long polls as repeated short polls (see `Gate`), so a pause waits for one
short call at most, not for the local pumps' 1 s long polls to time out.

When. `Snapshotter` takes one every `LOCAL_SNAPSHOT_SECONDS` (default 1) if a state-changing request
arrived since the last one (an idle runtime writes nothing; never less than 4 times the last
snapshot's work apart, so a large state cannot take more than a fifth of the time), and a last one on
an orderly stop (SIGTERM,
Ctrl-C) after the consumers have stopped. So after SIGTERM nothing is lost; after `kill -9` the
changes of at most the last interval are lost, as after a crash of the whole machine, and the
service's retries and leases carry on from the restored cut. Loading a snapshot is `restore_moto`
(before any resource is provisioned) and each emulator's `import_state`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("local")

STATE_FILE = "state.pickle"
FORMAT = 1
PERSISTED_SERVICES = ("dynamodb", "s3", "sqs", "ses")
SNAPSHOT_SECONDS_DEFAULT = 1.0
SLOW_SNAPSHOT_SECONDS = 0.25  # a snapshot taking longer is logged (at INFO)
# Requests that never change moto's state (X-Amz-Target suffixes of the JSON protocols; GET/HEAD).
_READ_ONLY_TARGETS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "DescribeTable",
        "DescribeTimeToLive",
        "ListTables",
        "GetQueueUrl",
        "GetQueueAttributes",
        "ListQueues",
        "ListDeadLetterSourceQueues",
    }
)
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


class StateError(Exception):
    """A saved state this runtime cannot load."""


def _new_condition() -> threading.Condition:
    return threading.Condition()


class _StatePickler(pickle.Pickler):
    """Pickles locks and conditions as new, unlocked ones (moto's queues carry a Condition)."""

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


# ------------------------------------------------------------------------------------- the gate
def changes_state(environ: dict[str, Any]) -> bool:
    """Whether a request may change a server's state (a read-only one does not call for a snapshot)."""
    if environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD", "OPTIONS"):
        return False
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    return target.rpartition(".")[2] not in _READ_ONLY_TARGETS if target else True


class Gate:
    """Wraps a WSGI app: counts state-changing requests; `paused()` holds requests back for a snapshot.

    SQS long polls are served as short polls repeated until a message comes or the wait is over (woken
    at once by a send, else every `POLL_SECONDS`): a pause then waits for one short call at most, never
    for a long poll to time out (the local pumps long-poll each queue all the time), and a receive that
    got nothing does not count as a change, so an idle runtime takes no snapshots.
    """

    POLL_SECONDS = 0.1

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.changes = 0
        self._active = 0
        self._paused = False
        self._cond = threading.Condition()
        self._sent = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.endswith(".ReceiveMessage"):
            return self._receive(environ, start_response)
        try:
            return self._forward(environ, start_response, changes=changes_state(environ))
        finally:
            if "SendMessage" in target or "ChangeMessageVisibility" in target:
                with self._sent:
                    self._sent.notify_all()

    def _forward(self, environ: dict[str, Any], start_response: Callable[..., Any], *, changes: bool) -> list[bytes]:
        with self._cond:
            while self._paused:
                self._cond.wait()
            self._active += 1
            if changes:
                self.changes += 1
        try:
            # The body is produced inside the gate: a streamed response must not outlive a pause.
            result = self.app(environ, start_response)
            try:
                return list(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _receive(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            params = json.loads(body)
        except ValueError:
            params = None
        wait = params.get("WaitTimeSeconds") if isinstance(params, dict) else None
        deadline = time.monotonic() + (wait if isinstance(wait, int) and wait > 0 else 0)
        if isinstance(params, dict) and wait is not None:
            body = json.dumps({**params, "WaitTimeSeconds": 0}).encode()
        answer: list[Any] = []

        def capture(status: str, headers: list[Any], exc_info: Any = None) -> Callable[[bytes], None]:
            answer[:] = [status, headers, exc_info]
            return lambda data: None

        while True:
            call = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
            data = b"".join(self._forward(call, capture, changes=False))
            received = b'"Messages"' in data
            if received or not str(answer[0]).startswith("200") or time.monotonic() >= deadline:
                if received:  # messages marked received: a change (an empty receive changes nothing)
                    with self._cond:
                        self.changes += 1
                start_response(*answer)
                return [data]
            with self._sent:
                self._sent.wait(min(self.POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._cond:
            while self._paused:  # one snapshot at a time
                self._cond.wait()
            self._paused = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()


def install_gate(server: Any) -> Gate:
    """Puts a gate in front of a running werkzeug server's app (its handlers read `server.app` per request)."""
    gate = Gate(server.app)
    server.app = gate
    return gate


# --------------------------------------------------------------------------------- the snapshot
@dataclass
class Snapshot:
    format: int
    moto_version: str
    python_version: str
    saved_at: float
    moto: dict[str, dict[str, dict[str, Any]]]
    gemini: dict[str, Any] | None = None
    cloudinary: dict[str, Any] | None = None
    ports: dict[str, int] = field(default_factory=dict)


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


def capture_moto() -> dict[str, dict[str, dict[str, Any]]]:
    """{service: {account: {region: backend}}} of the backends that exist (call while moto is paused)."""
    from moto.backends import get_backend

    state: dict[str, dict[str, dict[str, Any]]] = {}
    for service in PERSISTED_SERVICES:
        accounts = get_backend(service)  # type: ignore[call-overload]
        state[service] = {account: dict(regions.items()) for account, regions in accounts.items()}
    return state


def restore_moto(state: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Loads saved backends into moto's live ones (in place: whoever holds a backend sees the state)."""
    from moto.backends import get_backend

    for service, accounts in state.items():
        live = get_backend(service)  # type: ignore[call-overload]
        for account, regions in accounts.items():
            for region, saved in regions.items():
                live[account][region].__dict__.update(saved.__dict__)
                if service == "s3":  # moto's index of bucket names, kept beside the backends, not in them
                    for bucket in saved.buckets:
                        live.bucket_accounts[bucket] = account


class StateStore:
    """`state.pickle` in a directory: written atomically, read once at start."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def save(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def load(self) -> Snapshot | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        fresh = f"delete {self.directory} (or `make clean-data`) to start with a fresh state"
        try:
            snapshot = pickle.loads(data)  # the runtime's own file, mode 0600, in the user's data dir
        except Exception as exc:
            raise StateError(f"{self.path} cannot be read ({exc!r}); {fresh}") from exc
        if not isinstance(snapshot, Snapshot) or snapshot.format != FORMAT:
            raise StateError(f"{self.path} is not a state this runtime wrote; {fresh}")
        versions = (_moto_version(), platform.python_version())
        if (snapshot.moto_version, snapshot.python_version) != versions:
            raise StateError(
                f"{self.path} was written by moto {snapshot.moto_version} on Python {snapshot.python_version}, "
                f"this is moto {versions[0]} on Python {versions[1]}; {fresh}"
            )
        return snapshot


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


# ------------------------------------------------------------------------------- the snapshotter
class Snapshotter:
    """Snapshots the runtime's state on a cadence when it changed, and once more on stop()."""

    def __init__(
        self,
        store: StateStore,
        gates: dict[str, Gate],
        capture: Callable[[], Snapshot],
        interval: float = SNAPSHOT_SECONDS_DEFAULT,
        pause: tuple[str, ...] = ("moto",),
    ) -> None:
        self.store = store
        self.gates = gates
        self.pause = pause
        self.capture = capture
        self.interval = interval
        self.saved_changes = -1
        self.snapshots = 0
        self.last_seconds = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-snapshots", daemon=True)

    def start(self) -> Snapshotter:
        self._thread.start()
        return self

    def _changes(self) -> int:
        return sum(gate.changes for gate in self.gates.values())

    def snapshot(self, *, force: bool = False) -> bool:
        """Takes and writes a snapshot if anything changed since the last one (or `force`)."""
        with self._lock:
            if not force and self._changes() == self.saved_changes:
                return False
            with contextlib.ExitStack() as stack:
                for name in self.pause:
                    stack.enter_context(self.gates[name].paused())  # waits for a long poll (<= 1 s) to end
                started = time.monotonic()  # the work from here on, not the wait, sets the cadence's floor
                changes = self._changes()
                data = dumps(self.capture())
            self.store.save(data)
            self.saved_changes = changes
            self.snapshots += 1
            self.last_seconds = time.monotonic() - started
            log.log(
                logging.INFO if self.last_seconds > SLOW_SNAPSHOT_SECONDS else logging.DEBUG,
                "state snapshot %d: %.1f MB in %.0f ms",
                self.snapshots,
                len(data) / 1e6,
                self.last_seconds * 1000,
            )
            return True

    def _run(self) -> None:
        while not self._stop.wait(max(self.interval, 4 * self.last_seconds)):
            try:
                self.snapshot()
            except Exception:  # a failed snapshot (disk full) is logged; the runtime keeps serving
                log.exception("state snapshot failed; the previous one in %s is kept", self.store.path)

    def stop(self) -> None:
        """Ends the cadence and takes the last snapshot (call once nothing else changes the state)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.snapshot(force=True)
