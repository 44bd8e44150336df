"""The fault table on moto and the emulators: the real handlers, the real adapters, and a
fault injected at one call of each kind the pipeline makes:

- each AWS call kind, at botocore's level on the service's own clients (`before-call` raises for `fail`
  and `timeout`; `after-call` raises ProcessDied for `die-after`: the call took effect, the process died);
- the Gemini and Cloudinary calls: `fail` is the emulator answering 503/500 through the real SDKs,
  `timeout` and `die-after` wrap the live adapter (OutcomeUnknown before the call / ProcessDied after it).

A client creates a two-request batch with an `Idempotency-Key` and repeats the request until it gets its
answer; SQS's redeliveries are the queue driver's (a message whose consumer failed or died comes back),
the scheduler's ticks are the poller's handler. The end state is checked (one batch, completed, both
items succeeded, one asset each) and the money (one charge, no refund, ledger = balance).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from batchgen import constants
from batchgen.domain.errors import OutcomeUnknown
from tests.conftest import grant
from tests.unit.test_fault_table import ProcessDied, clock

SUBMIT, COLLECT, UPLOAD = constants.SUBMIT_QUEUE, constants.COLLECT_QUEUE, constants.UPLOAD_QUEUE
BODY = {"type": "character", "requests": [{"id": "a", "prompt": "pose a"}, {"id": "b", "prompt": "pose b"}]}
FAULTS = ("fail", "timeout", "die-after")


@contextmanager
def aws_fault(service: str, operation: str, kind: str) -> Iterator[list[int]]:
    """Strikes the first `operation` call the service's client makes after this point."""
    from batchgen.adapters.aws import client

    events = client(service).meta.events
    struck = [0]
    event = f"{'after' if kind == 'die-after' else 'before'}-call.{service}.{operation}"

    def strike(**_: Any) -> None:
        if struck[0]:
            return
        struck[0] += 1
        if kind == "fail":
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, operation)
        if kind == "timeout":
            raise ReadTimeoutError(endpoint_url=f"https://{service}.injected")
        raise ProcessDied(f"injected: died after {service}.{operation}")

    events.register(event, strike, unique_id="fault-table")
    try:
        yield struck
    finally:
        events.unregister(event, unique_id="fault-table")


@contextmanager
def adapter_fault(module: Any, name: str, kind: str, emulator: Any, operation: str) -> Iterator[list[int]]:
    """A Gemini or Cloudinary call: the emulator's own error for `fail`, the wrapped adapter otherwise."""
    struck = [0]
    real: Callable[..., Any] = getattr(module, name)

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if struck[0]:
            return real(*args, **kwargs)
        struck[0] += 1
        if kind == "fail":
            emulator.inject_fault(503 if emulator.__class__.__name__.startswith("Gemini") else 500, 1, operation)
            return real(*args, **kwargs)
        if kind == "timeout":
            raise OutcomeUnknown(f"injected: {name} timed out")
        real(*args, **kwargs)
        raise ProcessDied(f"injected: died after {name}")

    setattr(module, name, faulty)
    try:
        yield struck
    finally:
        setattr(module, name, real)


def an_hour_later(monkeypatch: pytest.MonkeyPatch, seconds: int = 3600) -> None:
    """Powertools' idempotency clock moves past the invocation's timeout: an in-progress record left by
    a dead process has expired, as it has for a client that replays after its own timeout."""
    import datetime as dt

    from aws_lambda_powertools.utilities.idempotency import base
    from aws_lambda_powertools.utilities.idempotency.persistence import base as persistence_base
    from aws_lambda_powertools.utilities.idempotency.persistence import dynamodb as persistence_dynamodb

    real_time = time.time

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.fromtimestamp(real_time() + seconds, tz)

    monkeypatch.setattr(time, "time", lambda: real_time() + seconds)
    for module in (base, persistence_base, persistence_dynamodb):
        monkeypatch.setattr(module.dt, "datetime", Later)


def create_with_replays(api, monkeypatch: pytest.MonkeyPatch, key: str = "key-1", attempts: int = 3) -> str | None:
    """The client repeats its request with the same Idempotency-Key until it gets its answer: at once,
    then (a dead run's in-progress record blocks replays with 409 until it expires) after its timeout."""
    for attempt in range(attempts * 2):
        if attempt == attempts:
            an_hour_later(monkeypatch)
        try:
            response = api("POST", "/batch/create", BODY, headers={"Idempotency-Key": key})
        except ProcessDied:
            continue  # the connection dropped: the client sends the same request again
        if response.status == 202:
            return str(response.body["id"])
    return None


def drive(queues, poll, rounds: int = 14) -> None:
    with clock() as tick:
        for _ in range(rounds):
            for queue in (SUBMIT, COLLECT, UPLOAD):
                messages = queues.receive(queue)
                if messages:
                    try:
                        queues.deliver(queue, messages)
                    except (Exception, ProcessDied):
                        pass  # nothing was deleted: SQS delivers them again
            try:
                poll()
            except (Exception, ProcessDied):
                pass  # the next scheduled tick runs anyway
            tick()


def check_end_state(api, cloudinary, batch_id: str | None) -> None:
    from batchgen.adapters.dynamo import get_stores

    assert batch_id is not None, "the client never got its answer"
    body = api("GET", f"/batch/status/{batch_id}").body
    assert body["status"] == "completed", body
    assert body["successCount"] == 2 and body["refundedCredits"] == 0, body
    assert len([key for key in cloudinary.assets if batch_id in key]) == 2
    assert [b["id"] for b in api("GET", "/batch/history").body] == [batch_id]  # one batch
    ledger = get_stores().credits.list_ledger("user-1", limit=100)
    assert sorted(entry.reason for entry in ledger) == ["batch charge", "test grant"], ledger
    assert get_stores().credits.get_balance("user-1") == sum(entry.delta for entry in ledger)


# Every call kind once, the faults spread over them (`make test`); every (call, fault) pair under the
# long profile (`make test-long`). Each row is a whole batch through moto and the emulators (~1-2 s).
AWS_CALLS = [
    ("dynamodb", "TransactWriteItems"),
    ("dynamodb", "UpdateItem"),
    ("dynamodb", "PutItem"),
    ("dynamodb", "GetItem"),
    ("dynamodb", "Query"),
    ("sqs", "SendMessage"),
    ("sqs", "SendMessageBatch"),
    ("s3", "PutObject"),
    ("s3", "GetObject"),
    ("s3", "DeleteObjects"),
]
SDK_CALLS = [
    ("gemini", "create_job", "create"),
    ("gemini", "get_job", "get"),
    ("gemini", "iter_results", "download"),
    ("images_cdn", "upload_image", "upload"),
]
FULL = os.environ.get("HYPOTHESIS_PROFILE") == "long"
AWS_ROWS = (
    [(*call, kind) for call in AWS_CALLS for kind in FAULTS]
    if FULL
    else [(*call, FAULTS[n % 3]) for n, call in enumerate(AWS_CALLS)]
    + [("dynamodb", "TransactWriteItems", "die-after")]
)
SDK_ROWS = (
    [(*call, kind) for call in SDK_CALLS for kind in FAULTS]
    if FULL
    else [(*call, FAULTS[n % 3]) for n, call in enumerate(SDK_CALLS)]
    + [("gemini", "create_job", "create", "die-after"), ("images_cdn", "upload_image", "upload", "fail")]
)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumers delay a failed message through its visibility (5 s, 10 s ...): the driver delivers
    it again at the next round instead of waiting in real time."""
    from batchgen.handlers import collect, ingest, submit, upload

    for module in (collect, ingest, submit, upload):
        monkeypatch.setattr(module, "back_off", lambda *_args, **_kwargs: None)


@pytest.mark.parametrize(("service", "operation", "kind"), AWS_ROWS, ids=["-".join(row) for row in AWS_ROWS])
def test_a_fault_at_an_aws_call_ends_in_one_completed_batch_charged_once(
    service, operation, kind, api, gemini, cloudinary, queues, poll, monkeypatch
):
    grant("user-1", 10)
    with aws_fault(service, operation, kind) as struck:
        batch_id = create_with_replays(api, monkeypatch)
        drive(queues, poll)
    assert struck[0] == 1, f"{service}.{operation} was never called: the table is out of date"
    check_end_state(api, cloudinary, batch_id)


@pytest.mark.parametrize(("module", "name", "operation", "kind"), SDK_ROWS, ids=["-".join(row) for row in SDK_ROWS])
def test_a_fault_at_a_gemini_or_cloudinary_call_ends_in_one_completed_batch_charged_once(
    module, name, operation, kind, api, gemini, cloudinary, queues, poll, monkeypatch
):
    from batchgen import adapters

    __import__(f"batchgen.adapters.{module}")
    emulator = gemini if module == "gemini" else cloudinary
    grant("user-1", 10)
    with adapter_fault(getattr(adapters, module), name, kind, emulator, operation) as struck:
        batch_id = create_with_replays(api, monkeypatch)
        drive(queues, poll)
    assert struck[0] == 1, f"{module}.{name} was never called: the table is out of date"
    check_end_state(api, cloudinary, batch_id)


def test_a_replay_after_the_create_died_returns_the_same_batch_and_charges_once(api, aws, monkeypatch):
    """Regression: the process died after the create's transaction, before the idempotency
    record was completed; once the in-progress record expired (the function's timeout), the client's
    replay with the same Idempotency-Key ran the create again: a second batch, charged a second time."""
    from batchgen.adapters.dynamo import get_stores

    grant("user-1", 10)
    with aws_fault("dynamodb", "TransactWriteItems", "die-after"), pytest.raises(ProcessDied):
        api("POST", "/batch/create", BODY, headers={"Idempotency-Key": "key-1"})
    an_hour_later(monkeypatch)
    replay = api("POST", "/batch/create", BODY, headers={"Idempotency-Key": "key-1"})
    assert replay.status == 202, replay.body
    batches = api("GET", "/batch/history").body
    assert [batch["id"] for batch in batches] == [replay.body["id"]]  # the first run's batch, and only it
    charges = [entry for entry in get_stores().credits.list_ledger("user-1", limit=100) if entry.delta < 0]
    assert len(charges) == 1, charges


def test_a_standard_generation_killed_after_its_charge_is_refunded_by_the_tick_once(
    aws, gemini, cloudinary, lambda_context, poll
):
    """Regression: a standard generation whose function died between the charge and the
    settlement (its 29 s timeout, an out-of-memory kill) stayed charged for ever; the poller's tick now
    refunds it in full, once, after the function's timeout has surely passed."""
    import json

    from batchgen.adapters import gemini as gemini_adapter
    from batchgen.adapters.dynamo import get_stores
    from batchgen.handlers.photo import lambda_handler
    from local.apigw import proxy_event
    from tests.conftest import make_token

    grant("user-1", 10)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {make_token()}"}
    body = json.dumps({"prompt": "a cat", "mode": "t2i"})
    event = proxy_event("POST", constants.PHOTO_PATH, headers=headers, body=body)
    with adapter_fault(gemini_adapter, "generate_content", "die-after", gemini, "generate"):
        with pytest.raises(ProcessDied):
            lambda_handler(event, lambda_context)
    repository = get_stores().credits
    assert repository.get_balance("user-1") < 10
    assert poll()["generations_refunded"] == 0  # the function may still be running
    with clock() as tick:
        tick()
        assert poll()["generations_refunded"] == 1
        assert poll()["generations_refunded"] == 0  # once
    assert repository.get_balance("user-1") == 10
    reasons = [entry.reason for entry in repository.list_ledger("user-1", limit=10)]
    assert sorted(reasons) == ["standard generation charge", "standard generation refund", "test grant"]
    answer = lambda_handler(event, lambda_context)  # and a generation that settles leaves nothing behind
    assert answer["statusCode"] == 200, answer["body"]
    with clock() as tick:
        tick()
        assert poll()["generations_refunded"] == 0
    assert repository.get_balance("user-1") == 10 - json.loads(answer["body"])["creditCost"]


# --- notifications: the receiver's and the mailer's calls -----------------------------------
NOTIFY_ROWS = [
    ("webhook_http", "post", "fail"),  # the receiver answers 503 (then 200)
    ("webhook_http", "post", "timeout"),  # the receiver hangs past the timeout (then answers)
    ("webhook_http", "post", "die-after"),  # POSTed, then the consumer died before logging it
    ("mail", "send_email", "fail"),
    ("mail", "send_email", "timeout"),
    ("mail", "send_email", "die-after"),  # sent, then the consumer died
]


def notify_fault(real: Callable[..., Any], module: str, kind: str, receiver: Any, struck: list[int]) -> Any:
    """The receiver's faults are the receiver's own (a 503, a hang); the mailer's are SES errors."""

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if struck[0]:
            return real(*args, **kwargs)
        struck[0] += 1
        if module == "webhook_http" and kind != "die-after":
            receiver.script, receiver.hang_seconds = ([503], 0.0) if kind == "fail" else ([], 1.0)
        elif kind == "fail":
            raise ClientError({"Error": {"Code": "Throttling", "Message": "injected"}}, "SendEmail")
        elif kind == "timeout":
            raise ReadTimeoutError(endpoint_url="https://email.injected")
        answer = real(*args, **kwargs)
        receiver.hang_seconds = 0.0
        if kind == "die-after":
            raise ProcessDied(f"injected: died after {module}")
        return answer

    return faulty


def drive_notifications(api, queues, poll, batch_id: str) -> list[tuple[str, Decimal]] | None:
    """Rounds of the consumers and the tick; returns the ledger as it was when the batch completed."""
    from batchgen.adapters.dynamo import get_stores

    before = None
    for _ in range(10):
        for queue in (SUBMIT, COLLECT, constants.NOTIFY_QUEUE):
            messages = queues.receive(queue)
            if messages:
                try:
                    queues.deliver(queue, messages)
                except (Exception, ProcessDied):
                    pass  # SQS delivers them again
        try:
            poll()  # moves the batch along and relays its outbox
        except (Exception, ProcessDied):
            pass
        if before is None and api("GET", f"/batch/status/{batch_id}").body["status"] == "completed":
            before = sorted((e.reason, e.delta) for e in get_stores().credits.list_ledger("user-1", limit=100))
    return before


@pytest.mark.parametrize(("module", "name", "kind"), NOTIFY_ROWS, ids=["-".join(row) for row in NOTIFY_ROWS])
def test_a_fault_at_a_receiver_or_the_mailer_delivers_the_event_at_least_once_and_leaves_money_alone(
    module, name, kind, api, gemini, queues, poll, monkeypatch
):
    from batchgen import adapters
    from batchgen.adapters.dynamo import get_stores
    from batchgen.config import reset_caches
    from tests.conftest import make_token
    from tests.integration.test_notifications import _sent_emails
    from tests.webhook_receiver import start_receiver

    monkeypatch.setenv(constants.ENV_WEBHOOK_ALLOW_PRIVATE_TARGETS, "true")
    monkeypatch.setenv(constants.ENV_WEBHOOK_RETRY_SCALE, "0.0001")
    monkeypatch.setenv(constants.ENV_WEBHOOK_TIMEOUT_SECONDS, "0.3")
    reset_caches()
    receiver = start_receiver()
    try:
        api("POST", "/webhooks/endpoints", {"url": receiver.url, "events": ["batch.completed"]})
        token = make_token(email="user1@example.com")
        grant("user-1", 10)
        body = {"type": "text", "requests": [{"prompt": "ok"}, {"prompt": "bad [[fail]]"}], "notifyEmail": True}
        batch_id = api("POST", "/batch/create", body, token=token).body["id"]
        __import__(f"batchgen.adapters.{module}")
        target = getattr(adapters, module)
        struck = [0]
        monkeypatch.setattr(target, name, notify_fault(getattr(target, name), module, kind, receiver, struck))
        before = drive_notifications(api, queues, poll, batch_id)
        assert struck[0] == 1, f"{module}.{name} was never called"
        completed = [r for r in receiver.received if r.type == "batch.completed"]
        assert completed, "the batch.completed event was lost"
        assert {r.headers["webhook-id"] for r in completed} == {completed[0].headers["webhook-id"]}  # one id
        assert len([e for e in _sent_emails() if batch_id in e.body]) >= 1, "the email was lost"
        after = sorted((e.reason, e.delta) for e in get_stores().credits.list_ledger("user-1", limit=100))
        assert before == after  # notifications never touch money
        assert [reason for reason, _ in after] == ["batch charge", "failed items refund", "test grant"], after
    finally:
        receiver.stop()


def test_a_key_reused_after_its_claim_expired_creates_a_new_batch(api, aws, monkeypatch):
    """The claim lives as long as the idempotency record (24 h); one past it no longer counts, even if
    DynamoDB's TTL sweep has not removed it yet."""
    grant("user-1", 10)
    first = api("POST", "/batch/create", BODY, headers={"Idempotency-Key": "key-1"})
    assert first.status == 202, first.body
    an_hour_later(monkeypatch, constants.IDEMPOTENCY_TTL_SECONDS + 60)  # both the record and the claim expired
    again = api("POST", "/batch/create", BODY, headers={"Idempotency-Key": "key-1"})
    assert again.status == 202 and again.body["id"] != first.body["id"], again.body
