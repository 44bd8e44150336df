"""A pool of Lambda "execution environments" for one function, each in its own process.

Lambda runs one event per environment at a time and scales out by adding environments, so two API
requests really do run at once, each with its own module state. In one process that cannot be
reproduced: the api handler (Powertools' resolver) keeps the current request on module and class
attributes, so two threads in one interpreter would see each other's requests. Each sandbox here is a
separate Python process (spawned, not forked, so it starts as clean as a cold Lambda) that imports the
real handler and serves one event at a time over a pipe; the pool hands each invocation to a free
sandbox, so API-versus-API races meet only where they do in AWS: at DynamoDB, SQS and S3 (moto's
server), and the emulators.

A sandbox that dies mid-invocation is replaced and the invocation fails (the front door answers 502,
as API Gateway does when a Lambda crashes).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from batchgen import constants

log = logging.getLogger("local")
READY = "ready"
# ("configure", settings): environment variables known only once the sandbox was spawned (the runtime
# spawns the API's sandboxes first, so their imports overlap its own start), applied before any event.
CONFIGURE = "configure"
START_TIMEOUT_SECONDS = 60.0


class SandboxFailed(RuntimeError):
    """The invocation raised, or its sandbox died; the message says which."""


def _serve(connection: Connection, environment: dict[str, str], spec: constants.FunctionSpec) -> None:
    """The sandbox process: the handler, loaded once, then one event at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the runtime decides
    os.environ.clear()
    os.environ.update(environment)
    from local.invoke import LambdaContext, load_handler
    from local.lifecycle import die_with_parent

    die_with_parent()
    handler = load_handler(spec.handler)
    if handler is None:
        connection.send(("error", f"{spec.handler} does not exist"))
        return
    connection.send(READY)
    name = f"{constants.SERVICE_NAME}-{spec.name}"
    while True:
        try:
            event = connection.recv()
        except (EOFError, OSError):
            return
        if isinstance(event, tuple) and event[:1] == (CONFIGURE,):
            from local.runtime import reset_service_caches

            os.environ.update(event[1])
            reset_service_caches()
            continue
        try:
            connection.send(("ok", handler(event, LambdaContext(name, spec.memory_mb, spec.timeout_seconds))))
        except Exception as exc:  # the handler's own failure: reported, the sandbox stays warm
            log.exception("%s failed", spec.name)
            connection.send(("error", f"{type(exc).__name__}: {exc}"))


class _Sandbox:
    def __init__(self, spec: constants.FunctionSpec, environment: dict[str, str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, environment, spec), name=f"sandbox-{spec.name}", daemon=True
        )
        self.process.start()
        child.close()
        self.dead = False  # its pipe broke: the process is gone or going, whatever is_alive() says yet

    def wait_ready(self, timeout: float) -> None:
        if not self.connection.poll(timeout):
            raise SandboxFailed(f"a sandbox did not start within {timeout:.0f} s")
        message = self.connection.recv()
        if message != READY:
            raise SandboxFailed(f"a sandbox failed to start: {message}")

    def invoke(self, event: dict[str, Any]) -> Any:
        try:
            self.connection.send(event)
            outcome, value = self.connection.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self.dead = True
            raise SandboxFailed(f"the sandbox (pid {self.process.pid}) died during the invocation") from exc
        if outcome != "ok":
            raise SandboxFailed(value)
        return value

    def stop(self, timeout: float = 5) -> None:
        self.connection.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)


class SandboxPool:
    """`invoke(event)` like `LocalFunction.invoke`, on the first free sandbox of `size`."""

    def __init__(self, spec: constants.FunctionSpec, size: int, environment: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.size = size
        self.function_name = f"{constants.SERVICE_NAME}-{spec.name}"
        self._environment = dict(os.environ if environment is None else environment)
        self._free: queue.Queue[_Sandbox] = queue.Queue()
        self._all: list[_Sandbox] = []
        self._starting: list[_Sandbox] = []
        self._lock = threading.Lock()

    def spawn(self) -> SandboxPool:
        """Starts the sandboxes without waiting for them (they import the handler meanwhile)."""
        self._starting = [self._spawn() for _ in range(self.size)]  # together, so they start in parallel
        return self

    def start(self, environment: Mapping[str, str] | None = None) -> SandboxPool:
        """Waits until every sandbox is ready (spawning them first unless `spawn` did); `environment`:
        settings known only now, which each sandbox applies before its first event."""
        if not self._starting:
            self.spawn()
        if environment:
            self._environment.update(environment)  # a replacement sandbox gets them at its start
        for sandbox in self._starting:
            if environment:
                sandbox.connection.send((CONFIGURE, dict(environment)))
            sandbox.wait_ready(START_TIMEOUT_SECONDS)
            self._free.put(sandbox)
        self._starting = []
        return self

    def _spawn(self) -> _Sandbox:
        sandbox = _Sandbox(self.spec, self._environment)
        with self._lock:
            self._all.append(sandbox)
        return sandbox

    def pids(self) -> list[int]:
        with self._lock:
            return [sandbox.process.pid for sandbox in self._all if sandbox.process.pid is not None]

    def invoke(self, event: dict[str, Any]) -> Any:
        sandbox = self._free.get()
        try:
            result = sandbox.invoke(event)
        except SandboxFailed:
            if not sandbox.dead and sandbox.process.is_alive():
                self._free.put(sandbox)
            else:
                self._replace(sandbox)
            raise
        self._free.put(sandbox)
        return result

    def _replace(self, dead: _Sandbox) -> None:
        log.warning("%s sandbox pid %s died; starting another", self.spec.name, dead.process.pid)
        with self._lock:
            if dead in self._all:
                self._all.remove(dead)
        dead.stop(timeout=1)
        fresh = self._spawn()
        try:
            fresh.wait_ready(START_TIMEOUT_SECONDS)
        except SandboxFailed:
            log.exception("a replacement sandbox failed to start")
            return
        self._free.put(fresh)

    def stop(self, grace: float = 5) -> None:
        """Closes every sandbox's pipe (an idle one exits at once), waits `grace` seconds in all for
        them to end, then kills the rest (an invocation still running is abandoned, as Lambda does)."""
        import time

        with self._lock:
            sandboxes, self._all = list(self._all), []
        idle = []
        while not self._free.empty():
            idle.append(self._free.get_nowait())
        for sandbox in sandboxes:
            sandbox.connection.close()
            if sandbox in idle:  # holds nothing: no need to wait for its interpreter to wind down
                sandbox.process.kill()
        deadline = time.monotonic() + grace
        for sandbox in sandboxes:
            sandbox.process.join(max(0.0, deadline - time.monotonic()))
        for sandbox in sandboxes:
            if sandbox.process.is_alive():
                sandbox.process.kill()
                sandbox.process.join(5)
