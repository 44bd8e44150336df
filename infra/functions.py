"""Every Lambda function, built by one builder from its FunctionSpec."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Annotations, Duration, RemovalPolicy, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from batchgen.constants import FUNCTIONS, FunctionSpec
from infra import BUILD_DIR, FUNCTIONS_DIR, PYPROJECT, pascal_case
from infra.bundling import Target, bundle_dependencies, placeholder_layer
from infra.bytecode import stage_code
from infra.nag import acknowledge
from infra.settings import StackSettings

# The newest Python runtime aws-cdk-lib offers (a test fails when a newer one appears).
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64

_APPLICATION_LOG_LEVELS = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
}


class ServiceFunctions(Construct):
    """api, submit, poller, collect and upload: one code asset, one dependency layer, one role each.

    Each function gets its own role with no managed policy: writing to its own log
    group, X-Ray, and whatever the stack grants it explicitly.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: Mapping[str, str],
        settings: StackSettings,
        skip_bundling: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._environment = dict(environment)
        target = Target.lambda_arm64(RUNTIME.name)
        self._code = lambda_.Code.from_asset(str(stage_code(FUNCTIONS_DIR, target.python_version, BUILD_DIR)))
        layer_dir = (
            placeholder_layer(BUILD_DIR)
            if skip_bundling
            else bundle_dependencies(pyproject=PYPROJECT, target=target, build_dir=BUILD_DIR)
        )
        self.dependencies = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(layer_dir)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Runtime dependencies from pyproject.toml (Powertools, pydantic, google-genai, ...)",
        )
        if skip_bundling:
            Annotations.of(self.dependencies).add_warning_v2(
                "batchgen:bundling-skipped",
                "Dependency bundling skipped: the layer is an empty placeholder. Do not deploy this synth.",
            )
        self.by_name: dict[str, lambda_.Function] = {spec.name: self._build(spec) for spec in FUNCTIONS}

    def _build(self, spec: FunctionSpec) -> lambda_.Function:
        name = pascal_case(spec.name)
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=self._settings.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the {spec.name} function",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            self,
            name,
            description=spec.description or spec.name,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=self._code,
            layers=[self.dependencies],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            ephemeral_storage_size=Size.mebibytes(spec.ephemeral_storage_mb),
            reserved_concurrent_executions=(spec.reserved_concurrency if self._settings.reserved_concurrency else None),
            environment=self._environment,
            role=role,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=_APPLICATION_LOG_LEVELS[self._settings.log_level],
            log_group=log_group,
        )
        acknowledge(
            role,
            "Active X-Ray tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which do "
            "not support resource-level permissions; AWS documents Resource '*' for them.",
            "AwsSolutions-IAM5[Resource::*]",
        )
        return function
