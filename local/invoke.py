"""One Lambda function, emulated in-process: the real handler, a Lambda-shaped context, one event at a time.

Lambda runs one event per execution environment at a time; the local runtime keeps one warm
"environment" per function, so module-level state in a handler (Powertools' resolver keeps the
current event on a global) is never shared by two concurrent invocations.
"""

from __future__ import annotations

import importlib
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

    def __init__(self, spec: constants.FunctionSpec, handler: Handler) -> None:
        self.spec = spec
        self.handler = handler
        self.function_name = f"{constants.SERVICE_NAME}-{spec.name}"
        self._environment_lock = threading.Lock()

    @classmethod
    def load(cls, spec: constants.FunctionSpec) -> LocalFunction | None:
        handler = load_handler(spec.handler)
        return cls(spec, handler) if handler is not None else None

    def context(self) -> LambdaContext:
        return LambdaContext(self.function_name, self.spec.memory_mb, self.spec.timeout_seconds)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._environment_lock:
            return self.handler(event, self.context())
