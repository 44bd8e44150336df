"""`make rehearse`: the synthesized stack deployed on moto's CloudFormation with IAM enforced, every flow
run through the deployed functions. Exit 0 when every flow passed, 1 with the failure otherwise.

The flows are a table (FLOWS): a new function or route is one more row.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgen import constants
from infra.settings import NOT_CONTEXT_SETTINGS
from rehearsal.deploy import (
    LAMBDA_RUNTIME_VARIABLES,
    Deployment,
    FunctionProcess,
    Moto,
    RehearsalFailure,
    deploy,
    synthesize,
)
from rehearsal.moto_gaps import DENIALS, SERVER_GAPS, TEMPLATE_GAPS

SENDER = "notifications@rehearsal.example"  # verified in SES the way the README tells operators to
USER_EMAIL = "user@rehearsal.example"


@dataclass
class Rehearsal:
    deployment: Deployment
    gemini: Any
    cloudinary: Any
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
            raise RehearsalFailure(f"{method} {path} answered {status}: {text[:500]}")
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
            raise RehearsalFailure(f"{queue.consumer} reported failures for {len(failed)} messages: {result}")
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def tick(self) -> Any:
        """The scheduler's invocation of the poller (moto has no EventBridge Scheduler)."""
        return self.function("poller").invoke({"source": "aws.scheduler", "detail-type": "Scheduled Event"})

    def settle(self, until: Callable[[], bool], seconds: float = 60) -> None:
        """Deliver every queue and tick the poller until `until()` holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            moved = sum(self.deliver(queue) for queue in constants.QUEUES)
            if until():
                return
            if not moved:
                self.tick()
                time.sleep(0.2)
        raise RehearsalFailure("the pipeline did not get there in time")

    def status(self, batch_id: str) -> dict[str, Any]:
        return dict(self.expect(200, "GET", f"/batch/status/{batch_id}", token=self.user_token))

    def done(self, batch_id: str) -> Callable[[], bool]:
        return lambda: bool(self.status(batch_id)["isComplete"])


# ------------------------------------------------------------------------------------------ flows
def flow_public_routes(r: Rehearsal) -> str:
    for path in ("/health", "/openapi.json", "/docs", "/console/"):
        r.expect(200, "GET", path)
    return "health, openapi.json, docs, console"


def flow_credits(r: Rehearsal) -> str:
    body = {"userId": "rehearsal-user", "amount": 100, "reason": "rehearsal"}
    r.expect(200, "POST", "/admin/credits", body, token=r.admin_token)
    return "admin credits granted"


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
    created = r.expect(202, "POST", "/batch/create", body, token=r.user_token)
    batch_id = r.state["inline"] = created["id"]
    r.settle(r.done(batch_id))
    status = r.status(batch_id)
    if status["status"] != "completed" or status["successCount"] != 1:
        raise RehearsalFailure(f"the inline batch ended {status['status']}: {status['errors']}")
    r.settle(lambda: any(hook["type"] == "batch.completed" for hook in r.state["received"]))
    return "create, submit, poll, collect, upload, finalise, batch.completed webhook"


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
    with urllib.request.urlopen(answer["url"], timeout=10) as response:  # noqa: S310 - moto on 127.0.0.1
        lines = response.read().decode().splitlines()
    if len(lines) != 2:
        raise RehearsalFailure(f"the manifest has {len(lines)} lines, expected 2")
    return "manifest written by notify, fetched through its presigned URL"


def flow_gemini_webhook(r: Rehearsal) -> str:
    job = next(iter(r.gemini.jobs.values()))
    body = r.gemini.webhook_body(job)
    headers = r.gemini.webhook_headers(body, "msg_rehearsal")
    answer = r.expect(202, "POST", constants.GEMINI_WEBHOOK_PATH, raw=body, headers=headers)
    return f"signed event accepted ({answer['status']})"


def flow_standard_endpoint(r: Rehearsal) -> str:
    body = {"model": "gemini-3.1-flash-image", "prompt": "a lighthouse", "mode": "t2i"}
    answer = r.expect(200, "POST", constants.PHOTO_PATH, body, token=r.user_token)
    return f"generated {answer['generationId']}"


def flow_retry(r: Rehearsal) -> str:
    retried = r.expect(202, "POST", f"/batch/{r.state['inline']}/retry", token=r.user_token)
    r.settle(r.done(retried["id"]))
    return f"retry batch {retried['id']} ended {r.status(retried['id'])['status']}"


def flow_file_batch(r: Rehearsal) -> str:
    upload = r.expect(201, "POST", "/batch/uploads", token=r.user_token)
    lines = "".join(json.dumps({"id": f"line-{n}", "prompt": f"a cat number {n}"}) + "\n" for n in range(3))
    request = urllib.request.Request(upload["uploadUrl"], data=lines.encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - moto on 127.0.0.1
        pass
    created = r.expect(
        202, "POST", "/batch/create", {"type": "text-to-image", "inputFile": upload["uploadId"]}, token=r.user_token
    )
    r.settle(r.done(created["id"]))
    r.state["file"] = created["id"]
    return f"uploaded through the presigned URL, ingested, {r.status(created['id'])['status']}"


def flow_cancel(r: Rehearsal) -> str:
    body = {"type": "text", "requests": [{"prompt": "a haiku"}], "offPeak": True}
    created = r.expect(202, "POST", "/batch/create", body, token=r.user_token)
    cancelled = r.expect(200, "POST", f"/batch/{created['id']}/cancel", token=r.user_token)
    return f"scheduled batch cancelled ({cancelled['status']}, refunded {cancelled['refundedCredits']})"


def flow_delete(r: Rehearsal) -> str:
    r.expect(204, "DELETE", f"/batch/{r.state['inline']}?purgeImages=true", token=r.user_token)
    r.settle(lambda: True)
    for queue in constants.QUEUES:
        while r.deliver(queue):
            pass
    return "deleted with its images purged"


FLOWS: tuple[tuple[str, Callable[[Rehearsal], str]], ...] = (
    ("console, docs and health routes", flow_public_routes),
    ("admin credit grant", flow_credits),
    ("webhook endpoint and a delivery", flow_webhook_endpoint),
    ("inline batch end to end", flow_inline_batch),
    ("notification email", flow_email),
    ("results manifest", flow_manifest),
    ("Gemini webhook route", flow_gemini_webhook),
    ("standard endpoint", flow_standard_endpoint),
    ("retry", flow_retry),
    ("file batch (upload, ingest)", flow_file_batch),
    ("cancel", flow_cancel),
    ("delete", flow_delete),
)


# ------------------------------------------------------------------------------------------ checks
def check_environments(deployment: Deployment) -> None:
    """Every setting the code reads is in each function's deployed environment, or documented as not."""
    from batchgen.config import Settings

    read = {name.upper() for name in Settings.model_fields} | {constants.ENV_LOG_LEVEL}
    for function in deployment.functions.values():
        unset = sorted(read - set(function.environment) - set(NOT_CONTEXT_SETTINGS) - set(LAMBDA_RUNTIME_VARIABLES))
        if unset:
            raise RehearsalFailure(f"the template does not set {unset} for the {function.name} function")


def _receiver(state: dict[str, Any]) -> Any:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state["received"] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state["received"].append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["receiver_url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    return server


def run(*, drop_grant: str = "") -> int:
    """The whole rehearsal; `drop_grant` ("<function>:<secret env var>") removes one grant from the copy
    of the template first, to show the rehearsal fails without it."""
    import os

    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    from local.emulators.cloudinary import CloudinaryEmulator
    from local.emulators.gemini import GeminiEmulator
    from local.runtime import mint_token

    started = time.monotonic()
    gemini = GeminiEmulator(delay_seconds=0.5).start()
    gemini.webhook_secret = "whsec_" + base64.b64encode(b"rehearsal-webhook-key-0123456").decode()
    cloudinary = CloudinaryEmulator(api_secret="rehearsal-cloudinary-secret").start()
    moto = Moto().start()
    state: dict[str, Any] = {}
    receiver = _receiver(state)
    rehearsal: Rehearsal | None = None
    results: list[tuple[str, str, str]] = []
    try:
        context = {
            "geminiBaseUrl": gemini.base_url,
            "notifyEmailFrom": SENDER,
            "webhookAllowPrivateTargets": "true",  # the receiver is on 127.0.0.1
        }
        with tempfile.TemporaryDirectory() as outdir:
            template = synthesize(context, Path(outdir))
        if drop_grant:
            template = _without_grant(template, drop_grant)
        secret_values = {}
        for logical_id in template["Resources"]:
            if logical_id.startswith("SecretsGeminiApiKey"):
                secret_values[logical_id] = "rehearsal-gemini-key"
            elif logical_id.startswith("SecretsCloudinaryUrl"):
                secret_values[logical_id] = cloudinary.cloudinary_url
            elif logical_id.startswith("SecretsGeminiWebhookSecret"):
                secret_values[logical_id] = gemini.webhook_secret
        deployment = deploy(template, moto, secret_values)
        deployment.client("ses").verify_email_identity(EmailAddress=SENDER)  # as the README says
        check_environments(deployment)
        jwt_key = deployment.secrets[constants.ENV_JWT_SECRET_ARN]
        rehearsal = Rehearsal(deployment, gemini, cloudinary, state=state)
        os.environ[constants.ENV_JWT_ISSUER] = ""
        rehearsal.user_token = _token(jwt_key, "rehearsal-user", email=USER_EMAIL)
        rehearsal.admin_token = mint_token(jwt_key, "rehearsal-admin", role="admin")
        DENIALS.take()
        for name, flow in FLOWS:
            try:
                outcome = flow(rehearsal)
            except RehearsalFailure as exc:
                results.append(("FAIL", name, str(exc).splitlines()[0][:200]))
                denied = DENIALS.take()
                _print(results, denied)
                print(f"\n{name} failed:\n{exc}", file=sys.stderr)
                return 1
            denied = DENIALS.take()
            if denied:
                results.append(("FAIL", name, "AccessDenied"))
                _print(results, denied)
                return 1
            results.append(("ok", name, outcome))
        _print(results, [])
        print(
            f"\nrehearsal passed in {time.monotonic() - started:.0f} s ({len(FLOWS)} flows, "
            f"{len(deployment.functions)} functions, IAM enforced)"
        )
        return 0
    finally:
        if rehearsal is not None:
            for process in rehearsal.processes.values():
                process.stop()
        receiver.shutdown()
        moto.stop()
        gemini.stop()
        cloudinary.stop()


def _token(secret: str, subject: str, *, email: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": subject, "email": email, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


def _without_grant(template: dict[str, Any], drop: str) -> dict[str, Any]:
    """Removes, from the policy of `function`, the statement naming the secret `secret` (e.g. "api:GeminiApiKey")."""
    function, secret = drop.split(":")
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Policy" or f"Functions{function.title()}Role" not in logical_id:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            kept = [item for item in resources if secret not in json.dumps(item)]
            if len(kept) != len(resources):
                statement["Resource"] = kept
                print(f"(removed {function}'s grant on {secret} from the rehearsal's copy)")
    return template


def _print(results: list[tuple[str, str, str]], denied: list[str]) -> None:
    width = max(len(name) for _, name, _ in results)
    print("\nDeploy rehearsal (moto CloudFormation, IAM enforced)")
    for mark, name, outcome in results:
        print(f"  {mark:4} {name:{width}}  {outcome}")
    for denial in denied:
        print(f"  AccessDenied: {denial}")
    print("\nmoto gaps worked around:")
    for what, why in {**TEMPLATE_GAPS, **SERVER_GAPS}.items():
        print(f"  {what}: {why}")


if __name__ == "__main__":
    sys.exit(run(drop_grant=sys.argv[1] if len(sys.argv) > 1 else ""))
