"""Synthesize the stack, deploy it to moto's CloudFormation on 127.0.0.1, and run each deployed function
in its own process with the environment the template gives it and the credentials of its own role."""

from __future__ import annotations

import io
import json
import os
import secrets
import string
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from batchgen import constants
from infra import FUNCTIONS_DIR, REPO_ROOT
from rehearsal.moto_gaps import install_server_gaps, patch_template

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_NAME = "BatchGenRehearsal"
# What the Lambda runtime itself puts in every function's environment (besides its role's credentials).
LAMBDA_RUNTIME_VARIABLES = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "TZ",
)
# Stand-ins for what is not on this machine: AWS's endpoints (moto), the X-Ray daemon, the code's path.
REHEARSAL_VARIABLES = ("AWS_ENDPOINT_URL", "POWERTOOLS_TRACE_DISABLED", "PYTHONPATH", "PATH")


class RehearsalFailure(AssertionError):
    """The deployed stack does not work as deployed: what failed, and why."""


@dataclass
class Moto:
    """moto's server in this process, with IAM enforced once `enforce()` is called."""

    endpoint: str = ""
    server: Any = None

    def start(self) -> Moto:
        from moto import settings
        from moto.server import ThreadedMotoServer

        install_server_gaps()
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")  # the set-up: CloudFormation's own work
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def reset(self) -> None:
        """Forgets every resource (moto's reset), and lets the next deployment work unchecked again."""
        import urllib.request

        from moto import settings

        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def enforce(self) -> None:
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def synthesize(context: dict[str, Any], outdir: Path) -> dict[str, Any]:
    """`cdk synth` with cdk-nag, as app.py does; the dependency layer is skipped (the rehearsal runs the
    handlers on this machine's interpreter, not in Lambda)."""
    from infra.stack import build_app

    app, stack = build_app(context={"skipBundling": True, "stackName": STACK_NAME, **context}, outdir=str(outdir))
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    return dict(json.loads(Path(assembly.directory, artifact.template_file).read_text()))


@dataclass
class DeployedFunction:
    name: str  # the FunctionSpec name: api, submit, ...
    physical_name: str
    role_arn: str
    environment: dict[str, str]
    handler: str
    memory_mb: int
    timeout_seconds: int
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass
class Deployment:
    moto: Moto
    operator: boto3.session.Session  # an administrator of the account (the rehearsal's own checks)
    functions: dict[str, DeployedFunction]
    routes: dict[tuple[str, str], str]  # (method, resource path) -> function name
    secrets: dict[str, str]  # env var of the ARN -> the value stored
    template: dict[str, Any]

    def client(self, service: str) -> Any:
        return self.operator.client(service, endpoint_url=self.moto.endpoint)


def deploy(template: dict[str, Any], moto: Moto, secret_values: dict[str, str]) -> Deployment:
    """Publishes the assets as `cdk deploy` does, creates the secrets (a moto gap), CreateStack, reads back
    what was created, assumes every function's role; then turns on moto's IAM enforcement."""
    session = boto3.session.Session(
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap", region_name=REGION
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=moto.endpoint)

    _bootstrap(client, template)
    secret_arns = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::SecretsManager::Secret":
            value = secret_values.get(logical_id) or "".join(
                secrets.choice(string.ascii_letters + string.digits) for _ in range(64)
            )
            secret_arns[logical_id] = client("secretsmanager").create_secret(Name=logical_id, SecretString=value)["ARN"]
            secret_values[logical_id] = value
    patched = patch_template(template, secret_arns)
    cloudformation = client("cloudformation")
    cloudformation.create_stack(
        StackName=STACK_NAME, TemplateBody=json.dumps(patched), Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
    )
    stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RehearsalFailure(f"CreateStack ended {stack['StackStatus']}: {stack.get('StackStatusReason')}")

    functions = _functions(client, template)
    for function in functions.values():
        function.credentials = client("sts").assume_role(RoleArn=function.role_arn, RoleSessionName=function.name)[
            "Credentials"
        ]
    # moto would run the mapped functions itself, in Docker: the rehearsal plays the mappings instead.
    for mapping in client("lambda").list_event_source_mappings()["EventSourceMappings"]:
        client("lambda").update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    routes = _routes(client, functions)
    iam = client("iam")
    iam.create_user(UserName="operator")
    iam.put_user_policy(
        UserName="operator",
        PolicyName="administrator",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    operator = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )
    by_env = {}
    secret_envs = {
        "JwtSecret": constants.ENV_JWT_SECRET_ARN,
        "GeminiApiKey": constants.ENV_GEMINI_SECRET_ARN,
        "CloudinaryUrl": constants.ENV_CLOUDINARY_SECRET_ARN,
        "GeminiWebhookSecret": constants.ENV_GEMINI_WEBHOOK_SECRET_ARN,
    }
    for logical_id, value in secret_values.items():
        for prefix, env in secret_envs.items():
            if prefix in logical_id:
                by_env[env] = value
    moto.enforce()
    return Deployment(moto, operator, functions, routes, by_env, template)


def _bootstrap(client: Any, template: dict[str, Any]) -> None:
    """What `cdk bootstrap` leaves and `cdk deploy` uploads: the version parameter and the zipped assets."""
    client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String")
    bucket = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
    client("s3").create_bucket(Bucket=bucket)
    keys = set()
    for resource in template["Resources"].values():
        code = resource.get("Properties", {}).get("Code") or resource.get("Properties", {}).get("Content") or {}
        if resource["Type"] in ("AWS::Lambda::Function", "AWS::Lambda::LayerVersion") and "S3Key" in code:
            keys.add(code["S3Key"])
    for key in keys:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("README", "the rehearsal runs the handlers from functions/ on this machine\n")
        client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def _functions(client: Any, template: dict[str, Any]) -> dict[str, DeployedFunction]:
    """Each deployed function, named by its FunctionSpec (matched on the handler)."""
    by_handler = {spec.handler: spec for spec in constants.FUNCTIONS}
    found: dict[str, DeployedFunction] = {}
    for summary in client("lambda").list_functions()["Functions"]:
        config = client("lambda").get_function_configuration(FunctionName=summary["FunctionName"])
        spec = by_handler.get(config["Handler"])
        if spec is None:
            continue
        found[spec.name] = DeployedFunction(
            name=spec.name,
            physical_name=config["FunctionName"],
            role_arn=config["Role"],
            environment=dict(config.get("Environment", {}).get("Variables", {})),
            handler=config["Handler"],
            memory_mb=int(config["MemorySize"]),
            timeout_seconds=int(config["Timeout"]),
        )
    missing = {spec.name for spec in constants.FUNCTIONS} - set(found)
    if missing:
        raise RehearsalFailure(f"the stack created no function for {sorted(missing)}")
    return found


def _routes(client: Any, functions: dict[str, DeployedFunction]) -> dict[tuple[str, str], str]:
    """(method, resource path) -> function, read from the deployed REST API's integrations."""
    by_physical = {function.physical_name: function.name for function in functions.values()}
    gateway = client("apigateway")
    routes: dict[tuple[str, str], str] = {}
    for api in gateway.get_rest_apis()["items"]:
        for resource in gateway.get_resources(restApiId=api["id"], limit=500)["items"]:
            for method in resource.get("resourceMethods", {}):
                integration = gateway.get_integration(restApiId=api["id"], resourceId=resource["id"], httpMethod=method)
                target = next(
                    (name for physical, name in by_physical.items() if physical in integration.get("uri", "")), None
                )
                if target is not None:
                    routes[(method, resource["path"])] = target
    return routes


class FunctionProcess:
    """A deployed function's execution environment: a process with exactly the deployed environment."""

    def __init__(self, function: DeployedFunction, moto_endpoint: str) -> None:
        self.function = function
        credentials = function.credentials
        environment = {
            **function.environment,
            # What Lambda sets itself.
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
            "AWS_LAMBDA_FUNCTION_NAME": function.physical_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.physical_name}",
            "_HANDLER": function.handler,
            "LAMBDA_TASK_ROOT": str(FUNCTIONS_DIR),
            "TZ": ":UTC",
            # The rehearsal's stand-ins (REHEARSAL_VARIABLES).
            "AWS_ENDPOINT_URL": moto_endpoint,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PYTHONPATH": f"{FUNCTIONS_DIR}{os.pathsep}{REPO_ROOT}",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        read, write = os.pipe()
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rehearsal.worker", function.handler, str(write), str(function.timeout_seconds)],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            pass_fds=(write,),
            text=True,
            cwd=REPO_ROOT,
        )
        os.close(write)
        self._answers = os.fdopen(read)

    def invoke(self, event: dict[str, Any]) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        line = self._answers.readline()
        if not line:
            raise RehearsalFailure(f"the {self.function.name} function's process died:\n{self.log()[-3000:]}")
        answer = json.loads(line)
        if "error" in answer:
            raise RehearsalFailure(f"the {self.function.name} function raised {answer['error']}\n{answer['trace']}")
        return answer["result"]

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
