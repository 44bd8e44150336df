"""The flows the rehearsal runs through the deployed functions, and the harness that plays API Gateway,
the event source mappings and the scheduler for them.

The flows are a table (FLOWS): a new function or route is one more row. Each flow returns one line that
says what it saw, or raises RehearsalFailure.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import urllib3

from batchgen import constants
from rehearsal.deploy import Deployment, FunctionProcess, RehearsalFailure

SENDER = "notifications@rehearsal.example"  # verified in SES the way the README tells operators to
USER_EMAIL = "user@rehearsal.example"
USER = "rehearsal-user"
T = TypeVar("T")


@dataclass
class Rehearsal:
    deployment: Deployment
    gemini: Any  # local.emulators.gemini.GeminiEmulator
    cloudinary: Any  # local.emulators.cloudinary.CloudinaryEmulator
    processes: dict[str, FunctionProcess] = field(default_factory=dict)
    user_token: str = ""
    admin_token: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    # -------------------------------------------------------------------------------- invoking
    def function(self, name: str) -> FunctionProcess:
        if name not in self.processes:
            function = self.deployment.functions[name]
            self.processes[name] = FunctionProcess(function, self.deployment.moto.endpoint)
        return self.processes[name]

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
        self.processes.clear()

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request through API Gateway's deployed routes to the function behind it."""
        from local.apigw import proxy_event

        path_only, _, query = path.partition("?")
        routes = self.deployment.routes
        target = routes.get((method, path_only)) or routes.get(("ANY", path_only))
        resource = path_only
        if target is None:
            target, resource = routes.get(("ANY", "/{proxy+}")), "/{proxy+}"
        if target is None:
            raise RehearsalFailure(f"the deployed API has no route for {method} {path_only}")
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if payload is not None:
            sent.setdefault("Content-Type", "application/json")
        event = proxy_event(method, path_only, query=query, headers=sent, body=payload)
        event["resource"] = event["requestContext"]["resourcePath"] = resource
        answer = self.function(target).invoke(event)
        text = answer.get("body") or ""
        text = base64.b64decode(text).decode(errors="replace") if answer.get("isBase64Encoded") else text
        try:
            parsed: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        status = int(answer["statusCode"])
        if status >= 500:
            log = self.function(target).log()[-3000:]
            raise RehearsalFailure(
                f"{method} {path} answered {status}: {text[:500]}\nthe {target} function's log:\n{log}"
            )
        return status, parsed

    def expect(self, status: int, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        got, parsed = self.http(method, path, body, **kwargs)
        if got != status:
            raise RehearsalFailure(f"{method} {path} answered {got}, expected {status}: {parsed}")
        return parsed

    def deliver(self, queue: constants.QueueSpec) -> int:
        """Plays the queue's event source mapping once: receive with the consumer's own role, invoke,
        delete what succeeded. Returns how many messages were delivered."""
        import boto3

        from local.pumps import failed_message_ids, sqs_event

        consumer = self.deployment.functions[queue.consumer]
        credentials = consumer.credentials
        sqs = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name="us-east-1",
        ).client("sqs", endpoint_url=self.deployment.moto.endpoint)
        url = consumer.environment[queue.env_var]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=queue.batch_size, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return 0
        result = self.function(queue.consumer).invoke(sqs_event(messages, arn))
        failed = failed_message_ids(result, [m["MessageId"] for m in messages])
        if failed:
            log = self.function(queue.consumer).log()[-3000:]
            raise RehearsalFailure(
                f"{queue.consumer} reported failures for {len(failed)} messages: {result}\nits log:\n{log}"
            )
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def drain(self, *queues: constants.QueueSpec) -> int:
        """Delivers these queues (all of them when none is named) until they are empty."""
        delivered = 0
        while moved := sum(self.deliver(queue) for queue in queues or constants.QUEUES):
            delivered += moved
        return delivered

    def tick(self) -> Any:
        """The scheduler's invocation of the poller (moto has no EventBridge Scheduler)."""
        return self.function("poller").invoke({"source": "aws.scheduler", "detail-type": "Scheduled Event"})

    def settle(self, until: Callable[[], bool], seconds: float = 90) -> None:
        """Deliver every queue and tick the poller until `until()` holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            moved = self.drain()
            if until():
                return
            if not moved:
                self.tick()
                time.sleep(0.2)
        raise RehearsalFailure("the pipeline did not get there in time")

    @staticmethod
    def wait_for(found: Callable[[], T | None], what: str, seconds: float = 30) -> T:
        """Polls `found()` (no delivery, no tick) until it answers something."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            answer = found()
            if answer is not None:
                return answer
            time.sleep(0.1)
        raise RehearsalFailure(f"{what} did not happen in time")

    def status(self, batch_id: str) -> dict[str, Any]:
        return dict(self.expect(200, "GET", f"/batch/status/{batch_id}", token=self.user_token))

    def done(self, batch_id: str) -> Callable[[], bool]:
        return lambda: bool(self.status(batch_id)["isComplete"])

    def gemini_job(self, batch_id: str) -> Any:
        """The emulator's job for the batch (its display name carries the batch id), or None."""
        return next((job for job in self.gemini.jobs.values() if batch_id in (job.display_name or "")), None)

    def create(self, body: dict[str, Any]) -> str:
        return str(self.expect(202, "POST", "/batch/create", body, token=self.user_token)["id"])


# ------------------------------------------------------------------------------------------ flows
def flow_public_routes(r: Rehearsal) -> str:
    for path in ("/health", "/openapi.json", "/docs", "/console/"):
        r.expect(200, "GET", path)
    return "health, openapi.json, docs, console"


def flow_credits(r: Rehearsal) -> str:
    body = {"userId": USER, "amount": 100, "reason": "rehearsal"}
    r.expect(200, "POST", "/admin/credits", body, token=r.admin_token)
    balance = r.expect(200, "GET", "/credits", token=r.user_token)["balance"]
    return f"admin granted 100 credits, the user's balance reads {balance}"


def flow_webhook_endpoint(r: Rehearsal) -> str:
    created = r.expect(201, "POST", "/webhooks/endpoints", {"url": r.state["receiver_url"]}, token=r.user_token)
    r.state["endpoint_secret"] = created["secret"]
    r.expect(202, "POST", f"/webhooks/endpoints/{created['id']}/test", token=r.user_token)
    r.settle(lambda: any(hook["type"] == "webhook.test" for hook in r.state["received"]))
    return "endpoint created, test event delivered"


def flow_inline_batch(r: Rehearsal) -> str:
    body = {
        "type": "character",
        "notifyEmail": True,
        "requests": [{"id": "ok", "prompt": "a red fox"}, {"id": "bad", "prompt": "a broken one [[fail]]"}],
    }
    batch_id = r.state["inline"] = r.create(body)
    r.settle(r.done(batch_id))
    status = r.status(batch_id)
    if status["status"] != "completed" or status["successCount"] != 1 or status["refundedCredits"] != 2:
        raise RehearsalFailure(f"the inline batch ended {status['status']}: {status['errors']}")
    image = status["results"][0]
    if not any(asset_id in image for asset_id in r.cloudinary.assets):
        raise RehearsalFailure(f"the image {image} is not on Cloudinary")
    r.settle(lambda: any(hook["type"] == "batch.completed" for hook in r.state["received"]))
    return "create, submit, poll, collect, upload to Cloudinary, finalise with a refund, batch.completed webhook"


def flow_email(r: Rehearsal) -> str:
    def sent() -> list[Any]:
        from moto.ses.models import ses_backends

        return list(ses_backends["123456789012"]["us-east-1"].sent_messages)

    r.settle(lambda: bool(sent()))
    (message,) = sent()
    text = json.dumps(message.__dict__, default=str)
    link = "https://"  # the results link is absolute: the stack's own API URL
    if link not in text or r.state["inline"] not in text:
        raise RehearsalFailure(f"the email has no absolute link to the batch: {text[:400]}")
    return f"sent from {SENDER}, with an absolute results link"


def flow_manifest(r: Rehearsal) -> str:
    r.settle(lambda: r.http("GET", f"/batch/{r.state['inline']}/results", token=r.user_token)[0] == 200)
    answer = r.expect(200, "GET", f"/batch/{r.state['inline']}/results", token=r.user_token)
    with urllib.request.urlopen(answer["url"], timeout=10) as response:
        lines = response.read().decode().splitlines()
    if len(lines) != 2:
        raise RehearsalFailure(f"the manifest has {len(lines)} lines, expected 2")
    return "manifest written by notify, fetched through its presigned URL"


def flow_gemini_webhook(r: Rehearsal) -> str:
    """Gemini announces a finished job: the api asks Gemini (with its key) whose job it is and queues
    collect at once, before any poller tick."""
    from local.emulators.gemini import SUCCEEDED

    batch_id = r.create({"type": "text", "requests": [{"id": "hook", "prompt": "a haiku about webhooks"}]})
    r.drain(constants.SUBMIT_QUEUE)
    job = r.wait_for(lambda: r.gemini_job(batch_id), "the batch's Gemini job")
    r.wait_for(lambda: r.gemini_job(batch_id).state == SUCCEEDED or None, "the Gemini job's success")
    body = r.gemini.webhook_body(job)
    headers = r.gemini.webhook_headers(body, "msg_rehearsal")
    answer = r.expect(202, "POST", constants.GEMINI_WEBHOOK_PATH, raw=body, headers=headers)
    if answer["status"] != "collect_queued":
        raise RehearsalFailure(f"the Gemini webhook did not queue collect: {answer}")
    r.drain()  # collect and the rest, no poller tick
    status = r.status(batch_id)
    if status["status"] != "completed":
        raise RehearsalFailure(f"the batch collected through the webhook ended {status['status']}")
    return "signed event accepted, collect queued without a poller tick, batch completed"


def flow_standard_endpoint(r: Rehearsal) -> str:
    body = {"model": "gemini-3.1-flash-image", "prompt": "a lighthouse", "mode": "t2i"}
    answer = r.expect(200, "POST", constants.PHOTO_PATH, body, token=r.user_token)
    return f"generated {answer['generationId']} at {answer['creditCost']} credits"


def flow_retry(r: Rehearsal) -> str:
    retried = r.expect(202, "POST", f"/batch/{r.state['inline']}/retry", token=r.user_token)
    r.settle(r.done(retried["id"]))
    status = r.status(retried["id"])
    if status["requestCount"] != 1 or status.get("retryOf") not in (None, r.state["inline"]):
        raise RehearsalFailure(f"the retry holds {status['requestCount']} items, expected the 1 that failed")
    return f"retry batch of the failed item ended {status['status']}"


def flow_file_batch(r: Rehearsal) -> str:
    upload = r.expect(201, "POST", "/batch/uploads", token=r.user_token)
    lines = "".join(json.dumps({"id": f"line-{n}", "prompt": f"a cat number {n}"}) + "\n" for n in range(3))
    # As a browser's form sends it: the policy's fields first, then the file.
    form: list[tuple[str, Any]] = [*upload["fields"].items(), ("file", ("requests.jsonl", lines.encode()))]
    body, content_type = urllib3.encode_multipart_formdata(form)
    headers = {**upload["headers"], "Content-Type": content_type}
    request = urllib.request.Request(upload["uploadUrl"], data=body, method=upload["method"], headers=headers)
    with urllib.request.urlopen(request, timeout=10):
        pass
    batch_id = r.create({"type": "text-to-image", "inputFile": upload["uploadId"]})
    r.settle(r.done(batch_id))
    status = r.status(batch_id)
    if status["status"] != "completed" or status["successCount"] != 3:
        raise RehearsalFailure(f"the file batch ended {status['status']}: {status.get('failureReason')}")
    return "uploaded through the presigned form POST, ingested, 3 of 3 images completed"


def flow_cancel(r: Rehearsal) -> str:
    """A scheduled batch (nothing at Gemini yet) and one whose job is running at Gemini."""
    from local.emulators.gemini import CANCELLED

    scheduled = r.create({"type": "text", "requests": [{"prompt": "a haiku"}], "offPeak": True})
    answer = r.expect(200, "POST", f"/batch/{scheduled}/cancel", token=r.user_token)
    if answer["status"] != "cancelled" or answer["refundedCredits"] != answer["creditCost"]:
        raise RehearsalFailure(f"the scheduled batch's cancel answered {answer}")

    delay, r.gemini.delay_seconds = r.gemini.delay_seconds, 600  # the job stays at Gemini until cancelled
    try:
        running = r.create({"type": "text", "requests": [{"prompt": "a long poem"}]})
        r.drain(constants.SUBMIT_QUEUE)
        r.wait_for(lambda: r.gemini_job(running) is not None or None, "the batch's Gemini job")
    finally:
        r.gemini.delay_seconds = delay
    answer = r.expect(200, "POST", f"/batch/{running}/cancel", token=r.user_token)
    r.settle(lambda: r.gemini_job(running).state == CANCELLED)
    if answer["status"] != "cancelled" or answer["refundedCredits"] != answer["creditCost"]:
        raise RehearsalFailure(f"the running batch's cancel answered {answer}")
    return "scheduled batch cancelled and refunded; batch at Gemini cancelled there and refunded"


def flow_delete(r: Rehearsal) -> str:
    batch_id = r.state["inline"]
    image = r.status(batch_id)["results"][0]
    answer = r.expect(202, "DELETE", f"/batch/{batch_id}?purgeImages=true", token=r.user_token)
    if answer["purgeImageCount"] != 1:
        raise RehearsalFailure(f"the delete queued {answer['purgeImageCount']} images for removal, expected 1")
    r.settle(lambda: not any(asset_id in image for asset_id in r.cloudinary.assets) and r.gemini_job(batch_id) is None)
    r.expect(404, "GET", f"/batch/status/{batch_id}", token=r.user_token)
    return "deleted: the record gone (404), its Gemini job deleted, its image purged from Cloudinary"


def flow_flex(r: Rehearsal) -> str:
    """A flex batch: the Flex worker's own queue, role and function, one generateContent per item with
    service_tier flex, no Gemini batch job."""
    before = r.gemini.flex_calls
    requests = [{"id": "fox", "prompt": "a haiku about a fox"}, {"id": "owl", "prompt": "a haiku about an owl"}]
    batch_id = r.create({"type": "text", "tier": "flex", "requests": requests})
    r.settle(r.done(batch_id))
    status = r.status(batch_id)
    if status["status"] != "completed" or status["successCount"] != 2:
        raise RehearsalFailure(f"the flex batch ended {status['status']}: {status['errors']}")
    if status["routes"] != {"batch": 0, "flex": 2, "standard": 0} or r.gemini_job(batch_id) is not None:
        raise RehearsalFailure(
            f"the flex batch's items went {status['routes']} (a Gemini job: {r.gemini_job(batch_id)})"
        )
    if r.gemini.flex_calls - before != 2:
        raise RehearsalFailure(f"{r.gemini.flex_calls - before} Flex calls for 2 items")
    # Each call's usage is written by the worker with its own role (a denied write is only logged).
    billing = r.expect(200, "GET", f"/batch/status/{batch_id}", token=r.admin_token)["geminiBilling"]
    if billing["answers"] != 2:
        log = r.function("flex").log()[-2000:]
        raise RehearsalFailure(f"the admin's geminiBilling counts {billing['answers']} Flex answers of 2:\n{log}")
    return (
        "tier flex: 2 items, 2 Flex generateContent calls through the flex worker's queue, no Gemini job, both billed"
    )


def flow_standard_fallback(r: Rehearsal) -> str:
    """A deadline batch with the standard fallback (the rehearsal's standardFallbackSeconds puts its
    deadline within the fallback's window at once): the api reads the Flex queue's depth to route it, the
    poller moves its open item to the standard tier, debiting the price difference, and the Flex worker
    makes the call from the fallback's own queue."""
    from datetime import UTC, datetime, timedelta

    generated, flex_calls = r.gemini.generated, r.gemini.flex_calls
    deadline = (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"type": "text", "tier": "auto", "deadline": deadline, "fallback": "standard"}
    batch_id = r.create({**body, "requests": [{"id": "hare", "prompt": "a haiku about a hare"}]})
    r.tick()  # before any queue is delivered: the item is still open when the poller looks
    if r.status(batch_id)["routes"]["standard"] != 1:
        raise RehearsalFailure(f"the fallback did not move the item: {r.status(batch_id)}")
    r.deliver(constants.STANDARD_QUEUE)
    r.settle(r.done(batch_id))
    status = r.status(batch_id)
    if status["status"] != "completed" or status["successCount"] != 1 or not status["topUpCredits"]:
        raise RehearsalFailure(f"the fallback batch ended {status['status']}: {status}")
    calls = (r.gemini.generated - generated, r.gemini.flex_calls - flex_calls)
    if calls != (1, 0):
        raise RehearsalFailure(f"{calls[0]} standard and {calls[1]} Flex calls for 1 item moved to standard")
    return (
        f"deadline 30 min with fallback: the item moved to the standard tier (top-up {status['topUpCredits']} "
        "credits), one standard call through the standard queue, none at Flex"
    )


FLOWS: tuple[tuple[str, Callable[[Rehearsal], str]], ...] = (
    ("console, docs and health routes", flow_public_routes),
    ("admin credit grant", flow_credits),
    ("webhook endpoint and a delivery", flow_webhook_endpoint),
    ("inline batch end to end", flow_inline_batch),
    ("notification email", flow_email),
    ("results manifest", flow_manifest),
    ("Gemini webhook route", flow_gemini_webhook),
    ("standard endpoint", flow_standard_endpoint),
    ("Flex worker (a flex batch)", flow_flex),
    ("standard fallback near a deadline", flow_standard_fallback),
    ("retry", flow_retry),
    ("file batch (upload, ingest)", flow_file_batch),
    ("cancel", flow_cancel),
    ("delete", flow_delete),
)
