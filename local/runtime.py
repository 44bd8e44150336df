"""The whole service on one machine: moto, emulators, HTTP front door, SQS pumps, schedule.

Start order matters: moto's server and the AWS environment come first, before any boto3 client
exists; then the emulators (unless a real Gemini key / Cloudinary URL is configured), the table,
bucket and queues from `batchgen.constants`, the demo user's credits, and finally the threads that
invoke the real handlers. Production code never imports this package.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shlex
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchgen import constants
from local.invoke import REGION, LocalFunction

if TYPE_CHECKING:  # the heavy modules load in start(), after the AWS environment is in place
    from moto.server import ThreadedMotoServer

    from local.emulators.cloudinary import CloudinaryEmulator
    from local.emulators.gemini import GeminiEmulator
    from local.gateway import HttpFrontDoor
    from local.persistence import StateStore
    from local.pumps import SchedulerTick, SqsPump
    from local.sandboxes import SandboxPool

log = logging.getLogger("local")

LOCAL_GEMINI_KEY = "local-emulator-key"
TOKEN_LIFETIME_SECONDS = 24 * 3600
SQS_VISIBILITY_TIMEOUT_LOCAL_DEFAULT = 10
# How long a stop waits for running invocations before abandoning them (their messages come back).
STOP_GRACE_SECONDS = 1.0
# API requests run in this many sandbox processes at once (local.sandboxes); 0: in-process, one at a time.
API_SANDBOXES_LOCAL_DEFAULT = 2
# Submit, collect and upload each run in this many sandbox processes, as many batches at once (local.pumps).
PUMP_SANDBOXES_LOCAL_DEFAULT = 0
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# Local defaults for Powertools: no X-Ray daemon, no EMF metric lines, handler logs from WARNING up.
POWERTOOLS_LOCAL_DEFAULTS = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


LOCAL_NOTIFY_DEFAULTS = {
    constants.ENV_WEBHOOK_ALLOW_PRIVATE_TARGETS: "true",
    constants.ENV_WEBHOOK_RETRY_SCALE: "0.01",  # 5 s, 1 min, 5 min ... -> 0.05 s, 0.6 s, 3 s ...
}


class ConfigurationError(Exception):
    """A local runtime setting has an unusable value."""


def _number(environ: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from exc
    if value < minimum:
        raise ConfigurationError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


@dataclass(frozen=True)
class RuntimeOptions:
    host: str = "127.0.0.1"
    port: int = 3001
    poll_interval_seconds: float = constants.POLL_INTERVAL_SECONDS_LOCAL_DEFAULT
    gemini_delay_seconds: float = 5.0
    jwt_secret: str = ""
    user_id: str = "demo-user"
    user_credits: Decimal = Decimal(100)
    admin_id: str = "local-admin"
    visibility_timeout_seconds: int = SQS_VISIBILITY_TIMEOUT_LOCAL_DEFAULT
    api_sandboxes: int = API_SANDBOXES_LOCAL_DEFAULT
    pump_sandboxes: int = PUMP_SANDBOXES_LOCAL_DEFAULT
    # State kept across restarts in data_dir (local.persistence); off: everything lives in memory only.
    # `python -m local` keeps it unless LOCAL_PERSIST=0 (from_environ); a runtime built in code does not.
    persist: bool = False
    data_dir: Path = Path(".local-data")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RuntimeOptions:
        environ = os.environ if environ is None else environ
        raw_credits = environ.get("LOCAL_USER_CREDITS", "").strip() or "100"
        try:
            credits = Decimal(raw_credits)
        except InvalidOperation as exc:
            raise ConfigurationError(f"LOCAL_USER_CREDITS={raw_credits!r} is not a number") from exc
        if not credits.is_finite() or credits < 0 or credits != credits.quantize(Decimal("0.01")):
            raise ConfigurationError("LOCAL_USER_CREDITS must be >= 0 with at most two decimals")
        from local.token import data_dir, saved_secret

        persist = environ.get("LOCAL_PERSIST", "").strip().lower() not in ("0", "false", "no", "off")
        return cls(
            host=environ.get("HOST", "").strip() or cls.host,
            port=int(_number(environ, "PORT", cls.port, minimum=0)),
            poll_interval_seconds=_number(environ, "POLL_INTERVAL_SECONDS", cls.poll_interval_seconds, minimum=0.1),
            gemini_delay_seconds=_number(environ, "GEMINI_EMULATOR_DELAY", cls.gemini_delay_seconds, minimum=0),
            # The given secret, else (with a kept state) the one of the previous run, so that tokens stay
            # valid across restarts like the state they refer to; else a fresh one.
            jwt_secret=environ.get(constants.ENV_JWT_SECRET, "")
            or (saved_secret(environ) if persist else None)
            or secrets.token_urlsafe(32),
            user_id=environ.get("LOCAL_USER_ID", "").strip() or cls.user_id,
            user_credits=credits,
            admin_id=environ.get("LOCAL_ADMIN_ID", "").strip() or cls.admin_id,
            visibility_timeout_seconds=int(
                _number(environ, "SQS_VISIBILITY_TIMEOUT", cls.visibility_timeout_seconds, minimum=1)
            ),
            api_sandboxes=int(_number(environ, "LOCAL_API_SANDBOXES", cls.api_sandboxes, minimum=0)),
            pump_sandboxes=int(_number(environ, "LOCAL_PUMP_SANDBOXES", cls.pump_sandboxes, minimum=0)),
            persist=persist,
            data_dir=data_dir(environ),
        )


def mint_token(
    secret: str,
    subject: str,
    *,
    role: str | None = None,
    lifetime: int = TOKEN_LIFETIME_SECONDS,
    claims: dict[str, str] | None = None,
) -> str:
    """An HS256 token the api handler accepts (with `iss`/`aud` when the service checks them); `claims`
    adds e.g. `email` or `tier`."""
    import jwt

    now = int(time.time())
    payload: dict[str, Any] = {**(claims or {}), "sub": subject, "iat": now, "exp": now + lifetime}
    if role:
        payload["role"] = role
    if os.environ.get(constants.ENV_JWT_ISSUER):
        payload["iss"] = os.environ[constants.ENV_JWT_ISSUER]
    if os.environ.get(constants.ENV_JWT_AUDIENCE):
        payload["aud"] = os.environ[constants.ENV_JWT_AUDIENCE]
    return jwt.encode(payload, secret, algorithm="HS256")


class LocalRuntime:
    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.stop_event = threading.Event()
        self.moto: ThreadedMotoServer | None = None
        self.aws_endpoint = ""
        self.gemini: GeminiEmulator | None = None
        self.cloudinary: CloudinaryEmulator | None = None
        self.queue_urls: dict[str, str] = {}
        self.function_environment: dict[str, str] = {}  # what provisioning gave every function
        self.warming: list[LocalFunction] = []  # in-process functions whose handlers are imported after the start
        self.http: HttpFrontDoor | None = None
        self.api_pool: SandboxPool | None = None
        self.pumps: list[SqsPump] = []
        self.pump_pools: list[SandboxPool] = []
        self.ticks: list[SchedulerTick] = []
        self.not_started: list[str] = []
        self.user_token = ""
        self.admin_token = ""
        self.store: StateStore | None = None  # the kept state (None: in memory only)
        self.restored: dict[str, int] | None = None  # what was loaded at start (None: a fresh state)
        self.last_change: float | None = None  # when the loaded state last changed
        self._saved_ports: dict[str, int] = {}
        self._results_base_url_set = False

    # ---------------------------------------------------------------------------------- start
    def start(self) -> LocalRuntime:
        try:
            if self.options.persist:
                self._open_store()
            self._start_aws()
            settings = self._start_emulators()
            self._spawn_api_sandboxes()  # they import the api handler while the rest starts
            self._provision(settings)
            if self.store is not None:
                self._restore_and_keep()  # before any request: from here on every change is kept
            if self.restored is None:  # the starter credits once, not at every restart
                self._seed_credits()
            self._start_http()
            self._set_results_base_url()
            if self.gemini is not None and self.http is not None:
                self.gemini.webhook_url = self.http.base_url + constants.GEMINI_WEBHOOK_PATH
                self.gemini.resume_announcements()
            self._start_consumers()
            self._warm_functions()
        except BaseException:
            self.stop()
            raise
        from local.token import save_secret

        save_secret(self.options.jwt_secret)  # for `make token USER=...`
        self.user_token = mint_token(self.options.jwt_secret, self.options.user_id)
        self.admin_token = mint_token(self.options.jwt_secret, self.options.admin_id, role="admin")
        return self

    def _start_aws(self) -> None:
        """moto's server, and an environment that points every boto3 client at it (never at real AWS)."""
        from moto.server import ThreadedMotoServer

        from local.moto_atomic import make_dynamodb_atomic
        from local.moto_s3 import make_s3_strict
        from local.moto_speed import make_dynamodb_reads_fast

        make_dynamodb_atomic()  # the pumps and the front door call moto from several threads
        make_dynamodb_reads_fast()  # reads cost what they return, not the table (the load run)
        make_s3_strict()  # an upload's size bound is enforced as S3 enforces it; any PUT body is kept
        for name in [key for key in os.environ if key.startswith("AWS_ENDPOINT_URL_")]:
            os.environ.pop(name)  # a per-service endpoint would bypass moto
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            os.environ.pop(name, None)
        os.environ.update(FAKE_AWS_ENVIRONMENT)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self._saved_port("moto"), verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.aws_endpoint = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint
        for name, value in POWERTOOLS_LOCAL_DEFAULTS.items():
            os.environ.setdefault(name, value)

    def _start_emulators(self) -> dict[str, str]:
        """Emulators for the services with no real credentials configured; returns their settings."""
        settings = {constants.ENV_JWT_SECRET: self.options.jwt_secret}
        if not os.environ.get(constants.ENV_GEMINI_API_KEY):
            from local.emulators.gemini import GeminiEmulator

            self.gemini = GeminiEmulator(
                delay_seconds=self.options.gemini_delay_seconds, port=self._saved_port("gemini")
            ).start()
            settings[constants.ENV_GEMINI_API_KEY] = LOCAL_GEMINI_KEY
            settings[constants.ENV_GEMINI_BASE_URL] = self.gemini.base_url
            # The emulator announces each ended job by a signed webhook, as Gemini does: the local
            # runtime completes by push, the poller's tick being the fallback it is in AWS too.
            self.gemini.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            settings[constants.ENV_GEMINI_WEBHOOK_SECRET] = self.gemini.webhook_secret
        if not os.environ.get(constants.ENV_CLOUDINARY_URL):
            from local.emulators.cloudinary import CloudinaryEmulator

            # The same port as before when it is free: the image URLs in the kept state point at it.
            self.cloudinary = CloudinaryEmulator(
                api_secret=secrets.token_urlsafe(24), port=self._saved_port("cloudinary")
            ).start()
            settings[constants.ENV_CLOUDINARY_URL] = self.cloudinary.cloudinary_url
        return settings

    def _spawn_api_sandboxes(self) -> None:
        if self.options.api_sandboxes:  # concurrent requests run concurrently, each in its own sandbox
            from local.sandboxes import SandboxPool

            self.api_pool = SandboxPool(constants.API_FUNCTION, self.options.api_sandboxes).spawn()

    def _provision(self, settings: dict[str, str]) -> None:
        from local.provision import provision

        # Notifications locally: webhooks to 127.0.0.1 allowed, retry delays in seconds (unless set).
        for name, value in LOCAL_NOTIFY_DEFAULTS.items():
            settings.setdefault(name, os.environ.get(name, value))

        environment, self.queue_urls = provision(
            visibility_timeout=self.options.visibility_timeout_seconds, settings=settings
        )
        self.function_environment = environment
        os.environ.update(environment)
        reset_service_caches()
        from batchgen.adapters import aws

        # Create the shared clients here, on one thread: boto3's default session is not thread-safe.
        for service in ("dynamodb", "s3", "sqs"):
            aws.client(service)

    def _seed_credits(self) -> None:
        from batchgen.adapters.dynamo import get_stores

        if self.options.user_credits:
            get_stores().credits.adjust_balance(
                self.options.user_id, self.options.user_credits, "local starter credits"
            )

    def _start_http(self) -> None:
        from local.gateway import ApiGatewayApp, HttpFrontDoor, Invocable

        api: Invocable | None
        if self.api_pool is not None:  # the sandboxes import the handler; this process need not
            api = self.api_pool.start(self.function_environment)
        else:
            api = LocalFunction.load(constants.API_FUNCTION)
            if api is None:
                raise RuntimeError(f"{constants.API_FUNCTION.handler} is missing")
        photo = LocalFunction.find(constants.PHOTO_FUNCTION)  # the standard endpoint's own function
        self.warming += [photo] if photo is not None else []
        routes: dict[str, Invocable] = {constants.PHOTO_PATH: photo} if photo is not None else {}
        self.http = HttpFrontDoor(ApiGatewayApp(api, routes=routes), self.options.host, self.options.port).start()

    def _set_results_base_url(self) -> None:
        """The emails' results links are absolute, as deployed (where the stack sets its API's URL): here
        this runtime's own URL, known once the front door listens, unless RESULTS_BASE_URL is given."""
        if self.http is None or os.environ.get(constants.ENV_RESULTS_BASE_URL):
            return
        os.environ[constants.ENV_RESULTS_BASE_URL] = self.http.base_url
        self._results_base_url_set = True
        from batchgen.config import reset_caches

        reset_caches()

    def _start_consumers(self) -> None:
        import boto3

        from local.pumps import SchedulerTick, SqsPump, consumer_for

        sqs = boto3.session.Session().client("sqs")  # the pumps' own client, apart from the handlers'
        for queue in constants.QUEUES:
            spec = constants.function_by_name(queue.consumer)
            function = LocalFunction.find(spec)
            if function is None:
                self.not_started.append(f"SQS pump {queue.name} -> {spec.name}: {spec.handler} does not exist yet")
                continue
            consumer, concurrency, pool = consumer_for(function, self.options.pump_sandboxes)
            self.pump_pools += [pool] if pool is not None else []
            self.warming += [function] if pool is None else []
            url = self.queue_urls[queue.name]
            self.pumps.append(SqsPump(queue, url, consumer, sqs, self.stop_event, concurrency).start())
        poller = LocalFunction.find(constants.POLLER_FUNCTION)
        if poller is None:
            spec = constants.POLLER_FUNCTION
            self.not_started.append(f"scheduler -> {spec.name}: {spec.handler} does not exist yet")
        else:
            self.warming.append(poller)
            self.ticks.append(SchedulerTick(poller, self.options.poll_interval_seconds, self.stop_event).start())

    def _warm_functions(self) -> None:
        """Imports the in-process functions' handlers after the start, off the start's path (as Lambda warms
        an environment): the first messages do not wait for them. A handler that fails to import is
        reported here, and again by its pump at each delivery."""

        def warm() -> None:
            for function in self.warming:
                try:
                    function.warm()
                except Exception:
                    log.exception("%s (%s) cannot be imported", function.spec.name, function.spec.handler)

        threading.Thread(target=warm, name="warm-functions", daemon=True).start()

    def _saved_port(self, server: str) -> int:
        """The port `server` had in the kept state if it is free now, else 0 (any free port)."""
        from local.persistence import port_is_free

        port = self._saved_ports.get(server, 0)
        if port and not port_is_free("127.0.0.1", port):
            log.warning("%s's previous port %d is taken: kept URLs that name it will not work", server, port)
            return 0
        return port

    def _open_store(self) -> None:
        import json

        from local.persistence import StateStore

        self.store = StateStore(self.options.data_dir)
        if self.store.open():  # raises StateError for a state this runtime cannot load
            self.restored = {}
            self.last_change = self.store.last_change()
            self._saved_ports = json.loads(self.store.meta("ports") or "{}")

    def _restore_and_keep(self) -> None:
        """Loads the kept state into moto and the emulators, then keeps every change from now on."""
        import json

        from local import moto_journal

        store = self.store
        assert store is not None
        if self.restored is not None:
            self.restored = moto_journal.restore(store)
            if self.gemini is not None:
                self.gemini.load_rows((key.partition("|")[2], value) for key, value in store.rows("gemini|"))
            if self.cloudinary is not None:
                assets = [(key.partition("|")[2], value) for key, value in store.rows("cloudinary|")]
                self.cloudinary.load_rows(assets)
                self.restored["images"] = len(assets)
        moto_journal.attach(store)
        if self.gemini is not None:
            self.gemini.on_change = lambda changes: store.write((f"gemini|{key}", value) for key, value in changes)
        if self.cloudinary is not None:
            self.cloudinary.on_change = lambda changes: store.write(
                (f"cloudinary|{key}", value) for key, value in changes
            )
        ports = {"moto": self.moto.get_host_and_port()[1]} if self.moto else {}
        if self.gemini is not None:
            ports["gemini"] = self.gemini.port
        if self.cloudinary is not None:
            ports["cloudinary"] = self.cloudinary.port
        store.set_meta("ports", json.dumps(ports))

    # ---------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stops taking work, then the servers, then closes the kept state. Nothing is saved here: every
        change was kept before it was answered. Invocations still running are abandoned, as a Lambda
        stopped mid-way (their messages come back after the visibility timeout; a change one of them
        makes after the state is closed fails and is not answered)."""
        self.stop_event.set()
        if self.http is not None:
            self.http.stop()
            self.http = None
        pools = [*([self.api_pool] if self.api_pool is not None else []), *self.pump_pools]
        self.api_pool, self.pump_pools = None, []
        for pool in pools:
            pool.stop(grace=STOP_GRACE_SECONDS)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        workers: list[SqsPump | SchedulerTick] = [*self.pumps, *self.ticks]
        for worker in workers:  # a long poll ends within a second
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        for server in (self.gemini, self.cloudinary):
            if server is not None:
                server.stop()
        self.gemini = self.cloudinary = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        if self._results_base_url_set:  # the next runtime in this process listens elsewhere
            os.environ.pop(constants.ENV_RESULTS_BASE_URL, None)
            self._results_base_url_set = False
        if self.store is not None:
            from local import moto_journal

            self.store.close()  # waits for a write in progress; any later one fails unanswered
            moto_journal.detach()
            self.store = None

    # ---------------------------------------------------------------------------------- banner
    @property
    def api_url(self) -> str:
        return self.http.base_url if self.http else ""

    def banner(self) -> str:
        o = self.options
        url = self.api_url
        credits = f"with {o.user_credits.normalize():f} credits" if self.restored is None else "(balance kept)"
        gemini = (
            f"emulator {self.gemini.base_url} (jobs finish {o.gemini_delay_seconds:g} s after submit)"
            if self.gemini
            else "REAL Gemini API (GEMINI_API_KEY is set)"
        )
        cloudinary = (
            f"emulator {self.cloudinary.base_url}" if self.cloudinary else "REAL Cloudinary (CLOUDINARY_URL is set)"
        )
        pumps = ", ".join(f"{p.queue.name} -> {p.function.spec.name}" for p in self.pumps) or "none"
        poller = f"every {o.poll_interval_seconds:g} s" if self.ticks else "not started"
        if not o.persist:
            state = "in memory only (LOCAL_PERSIST=0): nothing survives a restart"
        elif self.restored is not None:
            changed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.last_change or time.time()))
            counts = ", ".join(f"{count} {name}" for name, count in self.restored.items())
            state = f"restored from {o.data_dir} ({counts}; last change {changed}); every change is kept there"
        else:
            state = f"new, kept in {o.data_dir} across restarts (delete it to start fresh)"
        lifetime = "valid 24 h, across restarts too" if o.persist else "valid 24 h or until this runtime stops"
        body = shlex.quote('{"type":"character","requests":[{"prompt":"a red fox"},{"prompt":"a blue owl"}]}')
        lines = [
            "",
            "batchgen local runtime is ready",
            f"  API          {url}   (docs {url}/docs, schema {url}/openapi.json)",
            f"  AWS (moto)   {self.aws_endpoint}",
            f"  Gemini       {gemini}",
            f"  Cloudinary   {cloudinary}",
            f"  SQS pumps    {pumps} (visibility timeout {o.visibility_timeout_seconds} s)",
            f"  Poller       {poller}",
            f"  State        {state}",
            *(f"  NOT STARTED  {line}" for line in self.not_started),
            "",
            f"# user {o.user_id!r} {credits}, and an admin (role 'admin'); tokens {lifetime}:",
            f"export API_URL={url}",
            f"export TOKEN={self.user_token}",
            f"export ADMIN_TOKEN={self.admin_token}",
            "",
            "# create a 2-request batch, then read its status:",
            'ID=$(curl -s -X POST "$API_URL/batch/create" -H "Authorization: Bearer $TOKEN" \\',
            f"  -H 'Content-Type: application/json' -d {body} \\",
            "  | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')",
            'curl -s "$API_URL/batch/status/$ID" -H "Authorization: Bearer $TOKEN"',
            "",
            "# the same with the batchgen CLI (installed in .venv by make): live progress, images saved to results/",
            'export BATCHGEN_URL="$API_URL" BATCHGEN_TOKEN="$TOKEN"',
            "printf 'a red fox\\na blue owl\\na broken one [[fail]]\\n' > prompts.txt",
            ".venv/bin/batchgen submit prompts.txt --wait --download results/",
            "",
            "# web console (each link signs in; the #token part never leaves the browser):",
            f"  user   {url}/console/#token={self.user_token}",
            f"  admin  {url}/console/#token={self.admin_token}",
            "",
            f"# a token for another local user ({lifetime}): make token USER=alice [ADMIN=1]",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
        return "\n".join(lines)


def reset_service_caches() -> None:
    """The service reads its settings and builds its clients once per process: make it re-read them."""
    from batchgen.adapters.aws import reset_clients
    from batchgen.config import reset_caches

    reset_caches()
    reset_clients()
    from batchgen.adapters.dynamo import get_stores

    get_stores.cache_clear()
