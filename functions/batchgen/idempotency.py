"""`Idempotency-Key` support through Powertools idempotency, stored in the service's own table.

Same user + key + body: the first response comes back and nothing is charged again.
Same user + key with another body: 409. Loaded only by requests that carry the header.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from batchgen import constants
from batchgen.adapters.aws import client
from batchgen.config import get_settings
from batchgen.domain.errors import Conflict, InvalidInput

MAX_KEY_CHARS = 255
_action: ContextVar[Callable[[], dict[str, Any]]] = ContextVar("idempotent_action")


@lru_cache(maxsize=1)
def _idempotent_runner() -> tuple[Callable[..., dict[str, Any]], IdempotencyConfig]:
    persistence = DynamoDBPersistenceLayer(
        table_name=get_settings().table_name,
        key_attr=constants.TABLE.partition_key,
        sort_key_attr=constants.TABLE.sort_key,
        static_pk_value="IDEMPOTENCY",
        expiry_attr=constants.TABLE.ttl_attribute,
        boto3_client=client("dynamodb"),
    )
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="body",
        expires_after_seconds=constants.IDEMPOTENCY_TTL_SECONDS,
        raise_on_no_idempotency_key=True,
    )

    @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=config)
    def run(request: dict[str, Any]) -> dict[str, Any]:
        return _action.get()()

    return run, config


def run_once(
    user_id: str,
    key: str,
    body: dict[str, Any],
    action: Callable[[], dict[str, Any]],
    lambda_context: Any = None,
) -> dict[str, Any]:
    if not key.strip() or len(key) > MAX_KEY_CHARS:
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters.")
    runner, config = _idempotent_runner()
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)  # in-progress records expire with the invocation
    token = _action.set(action)
    try:
        return runner(request={"key": f"{user_id}:{key}", "body": body})
    except IdempotencyValidationError as exc:
        raise Conflict("This Idempotency-Key was already used with a different request body; use a new key.") from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly.") from exc
    finally:
        _action.reset(token)
