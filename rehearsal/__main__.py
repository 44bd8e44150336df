"""`make rehearse`: the synthesized stack deployed on moto's CloudFormation with IAM enforced, every flow
run through the deployed functions. Exit 0 when every flow passed, 1 with the failure otherwise.

    python -m rehearsal                                   every flow (what `make rehearse` runs)
    python -m rehearsal --without-grant api:GeminiApiKey  the same with one grant removed (it fails)
    python -m rehearsal --prove-grant api:GeminiApiKey --json out.json
        every flow, then (on the same moto server, reset) the flows again without that grant, which must
        fail with AccessDenied; the JSON report has both (tests/rehearsal reads it)

One synthesis serves every scenario of a run; each scenario deploys the template afresh on a reset moto.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batchgen import constants
from infra.settings import NOT_CONTEXT_SETTINGS
from rehearsal.deploy import LAMBDA_RUNTIME_VARIABLES, Deployment, Moto, RehearsalFailure, deploy, synthesize
from rehearsal.flows import FLOWS, SENDER, USER, USER_EMAIL, Rehearsal
from rehearsal.moto_gaps import DENIALS, SERVER_GAPS, TEMPLATE_GAPS

GEMINI_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"rehearsal-webhook-key-0123456").decode()
# What a rehearsal without a grant runs: enough to reach the flow that needs it, not every flow again.
GRANT_PROOF_FLOWS = ("admin credit grant", "Gemini webhook route")


@dataclass
class Scenario:
    """One deployment and the flows run against it. `without_grant` ("<function>:<secret>", e.g.
    "api:GeminiApiKey") removes that function's grant on that secret from the deployed copy."""

    name: str
    without_grant: str = ""
    expect_pass: bool = True
    flows: tuple[tuple[str, Callable[[Rehearsal], str]], ...] = FLOWS


@dataclass
class Outcome:
    scenario: str
    without_grant: str
    passed: bool
    seconds: float
    results: list[tuple[str, str, str]] = field(default_factory=list)  # (ok|FAIL, flow, what it saw)
    denied: list[str] = field(default_factory=list)  # "<principal> may not <action> on <resource>"
    failure: str = ""


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
    """A webhook receiver on 127.0.0.1 that keeps every event it is sent in state["received"]."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state["received"] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server calls it by this name
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


# ------------------------------------------------------------------------------------------ running
@dataclass
class Stage:
    """What every scenario of one run shares: the emulators, moto's server, the synthesized template."""

    gemini: Any
    cloudinary: Any
    moto: Moto
    template: dict[str, Any]

    def secret_values(self) -> dict[str, str]:
        """Secret logical id -> the value the rehearsal stores (the JWT key is generated at deploy)."""
        values = {}
        for logical_id in self.template["Resources"]:
            if logical_id.startswith("SecretsGeminiApiKey"):
                values[logical_id] = "rehearsal-gemini-key"
            elif logical_id.startswith("SecretsCloudinaryUrl"):
                values[logical_id] = self.cloudinary.cloudinary_url
            elif logical_id.startswith("SecretsGeminiWebhookSecret"):
                values[logical_id] = GEMINI_WEBHOOK_SECRET
        return values


def rehearse(stage: Stage, scenario: Scenario) -> Outcome:
    """Deploys the template (less `without_grant`) on a fresh moto and runs the scenario's flows."""
    from local.runtime import mint_token

    started = time.monotonic()
    outcome = Outcome(scenario.name, scenario.without_grant, passed=False, seconds=0)
    stage.moto.reset()
    stage.gemini.reset()
    stage.gemini.webhook_secret = GEMINI_WEBHOOK_SECRET
    stage.cloudinary.reset()
    template = _without_grant(stage.template, scenario.without_grant) if scenario.without_grant else stage.template
    state: dict[str, Any] = {}
    receiver = _receiver(state)
    rehearsal: Rehearsal | None = None
    try:
        deployment = deploy(template, stage.moto, stage.secret_values())
        deployment.client("ses").verify_email_identity(EmailAddress=SENDER)  # as the README says
        check_environments(deployment)
        jwt_key = deployment.secrets[constants.ENV_JWT_SECRET_ARN]
        rehearsal = Rehearsal(deployment, stage.gemini, stage.cloudinary, state=state)
        for function in deployment.functions:  # every execution environment starts at once, as a deploy would
            rehearsal.function(function)
        rehearsal.user_token = _token(jwt_key, USER, email=USER_EMAIL)
        rehearsal.admin_token = mint_token(jwt_key, "rehearsal-admin", role="admin")
        DENIALS.take()
        for name, flow in scenario.flows:
            flow_started = time.monotonic()
            try:
                seen = flow(rehearsal)
            except RehearsalFailure as exc:
                outcome.denied = DENIALS.take()
                seen = "AccessDenied, then: " if outcome.denied else ""
                outcome.results.append(("FAIL", name, seen + str(exc).splitlines()[0][:200]))
                outcome.failure = f"{name} failed:\n{exc}"
                return outcome
            outcome.denied = DENIALS.take()
            if outcome.denied:
                outcome.results.append(("FAIL", name, "AccessDenied"))
                outcome.failure = f"{name}: AccessDenied"
                return outcome
            outcome.results.append(("ok", name, f"{seen} ({time.monotonic() - flow_started:.1f} s)"))
        outcome.passed = True
        return outcome
    except RehearsalFailure as exc:  # the deployment itself
        outcome.failure = str(exc)
        outcome.denied = DENIALS.take()
        return outcome
    finally:
        outcome.seconds = round(time.monotonic() - started, 1)
        if rehearsal is not None:
            rehearsal.stop()
        receiver.shutdown()


def run(scenarios: list[Scenario]) -> list[Outcome]:
    """Synthesizes once, then rehearses each scenario in turn on one moto server."""
    import logging

    for inherited in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(inherited, None)  # the rehearsal's clients name their own credentials and endpoint
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: one line per request otherwise
    os.environ[constants.ENV_JWT_ISSUER] = ""  # the tokens the rehearsal mints carry no issuer
    from local.emulators.cloudinary import CloudinaryEmulator
    from local.emulators.gemini import GeminiEmulator

    gemini = GeminiEmulator(delay_seconds=0.5).start()
    cloudinary = CloudinaryEmulator(api_secret="rehearsal-cloudinary-secret").start()
    moto = Moto().start()
    try:
        context = {
            "geminiBaseUrl": gemini.base_url,
            "notifyEmailFrom": SENDER,
            "geminiWebhookSecret": True,  # the Gemini webhook flow signs its event with it
            "webhookAllowPrivateTargets": "true",  # the webhook receiver is on 127.0.0.1
            # Every deadline within the standard fallback's window at once: its flow waits for no clock.
            "standardFallbackSeconds": 7200,
        }
        synth_started = time.monotonic()
        with tempfile.TemporaryDirectory() as outdir:
            template = synthesize(context, Path(outdir))
        print(f"synthesized in {time.monotonic() - synth_started:.0f} s", file=sys.stderr)
        stage = Stage(gemini, cloudinary, moto, template)
        outcomes = []
        for scenario in scenarios:
            outcome = rehearse(stage, scenario)
            _print(outcome)
            outcomes.append(outcome)
        return outcomes
    finally:
        moto.stop()
        gemini.stop()
        cloudinary.stop()


def _token(secret: str, subject: str, *, email: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": subject, "email": email, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


def _without_grant(template: dict[str, Any], drop: str) -> dict[str, Any]:
    """A copy of the template whose `function` role policy no longer names the secret `secret`
    (e.g. "api:GeminiApiKey"); a statement left with no resource goes."""
    import copy

    function, secret = drop.split(":")
    copied = copy.deepcopy(template)
    removed = 0
    for logical_id, resource in copied["Resources"].items():
        if resource["Type"] != "AWS::IAM::Policy" or f"Functions{function.title()}Role" not in logical_id:
            continue
        statements = []
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            kept = [item for item in resources if secret not in json.dumps(item)]
            removed += len(resources) - len(kept)
            if kept:
                statements.append({**statement, "Resource": kept})
        resource["Properties"]["PolicyDocument"]["Statement"] = statements
    if not removed:
        raise RehearsalFailure(f"the {function} function has no grant on {secret} to remove")
    return copied


def _print(outcome: Outcome) -> None:
    title = "Deploy rehearsal (moto CloudFormation, IAM enforced)"
    if outcome.without_grant:
        title += f", without the grant {outcome.without_grant}"
    print(f"\n{title}")
    width = max((len(name) for _, name, _ in outcome.results), default=0)
    for mark, name, seen in outcome.results:
        print(f"  {mark:4} {name:{width}}  {seen}")
    for denial in outcome.denied:
        print(f"  AccessDenied: {denial}")
    if outcome.failure:
        print(f"\n{outcome.failure}", file=sys.stderr)
    verdict = "passed" if outcome.passed else "FAILED"
    print(f"{verdict} in {outcome.seconds:.0f} s ({len(outcome.results)} flows run)")


def _print_gaps() -> None:
    print("\nmoto gaps worked around (rehearsal/moto_gaps.py):")
    for what, why in {**TEMPLATE_GAPS, **SERVER_GAPS}.items():
        print(f"  {what}: {why}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--without-grant", default="", help="<function>:<secret>: rehearse without that grant")
    parser.add_argument("--prove-grant", default="", help="<function>:<secret>: every flow, then without it")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    args = parser.parse_args(argv)
    if args.prove_grant:
        scenarios = [
            Scenario("every flow"),
            Scenario(
                f"without {args.prove_grant}",
                args.prove_grant,
                expect_pass=False,
                flows=tuple(flow for flow in FLOWS if flow[0] in GRANT_PROOF_FLOWS),
            ),
        ]
    else:
        scenarios = [Scenario("every flow", args.without_grant)]
    started = time.monotonic()
    outcomes = run(scenarios)
    _print_gaps()
    if args.json:
        args.json.write_text(json.dumps([asdict(outcome) for outcome in outcomes], indent=2))
    as_expected = all(o.passed == s.expect_pass for s, o in zip(scenarios, outcomes, strict=True))
    print(f"\nrehearsal {'as expected' if as_expected else 'NOT as expected'} in {time.monotonic() - started:.0f} s")
    return 0 if as_expected else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
