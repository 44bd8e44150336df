"""One Lambda function, emulated in-process: the real handler, a Lambda-shaped context, one event at a time.

Lambda runs one event per execution environment at a time; the local runtime keeps one warm
"environment" per function, so module-level state in a handler (Powertools' resolver keeps the
current event on a global) is never shared by two concurrent invocations.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchgen import constants

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

Handler = Callable[[dict[str, Any], Any], Any]
log = logging.getLogger("local")


@dataclass
class LambdaContext:
    """The attributes and method of `awslambdaric`'s context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id[:8]}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


def load_handler(dotted_path: str) -> Handler | None:
    """`package.module.function` -> the function; None when the module itself does not exist (yet).

    Any other import failure (a syntax error, a missing dependency of an existing module) is raised:
    a broken handler must stop the runtime, not hide behind a silent pump.
    """
    module_name, _, attribute = dotted_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            return None
        raise
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ImportError(f"{dotted_path}: {module_name} has no callable {attribute!r}")
    return handler


class LocalFunction:
    """A FunctionSpec bound to its handler; `invoke` is a synchronous Lambda invocation."""

    def __init__(self, spec: constants.FunctionSpec, handler: Handler | None = None) -> None:
        self.spec = spec
        self._handler = handler
        self.function_name = f"{constants.SERVICE_NAME}-{spec.name}"
        self._environment_lock = threading.Lock()

    @classmethod
    def load(cls, spec: constants.FunctionSpec) -> LocalFunction | None:
        handler = load_handler(spec.handler)
        return cls(spec, handler) if handler is not None else None

    @classmethod
    def find(cls, spec: constants.FunctionSpec) -> LocalFunction | None:
        """Like `load`, but the handler's module is imported by `warm` or the first invocation (a Lambda
        cold start), not now: a start does not wait for every function's SDKs. None when the module does
        not exist."""
        module_name = spec.handler.rpartition(".")[0]
        try:
            found = importlib.util.find_spec(module_name)
        except ModuleNotFoundError:
            found = None
        return cls(spec) if found is not None else None

    @property
    def handler(self) -> Handler:
        if self._handler is None:
            with self._environment_lock:
                return self._loaded()
        return self._handler

    def _loaded(self) -> Handler:
        if self._handler is None:
            handler = load_handler(self.spec.handler)
            if handler is None:
                raise ImportError(f"{self.spec.handler} does not exist")
            self._handler = handler
        return self._handler

    def warm(self) -> None:
        """Imports the handler now (off the caller's path); an import failure is raised."""
        _ = self.handler

    def context(self) -> LambdaContext:
        return LambdaContext(self.function_name, self.spec.memory_mb, self.spec.timeout_seconds)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._environment_lock:
            return self._loaded()(event, self.context())
