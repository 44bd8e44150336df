"""The public REST API: API Gateway (REST) proxying every route to the api function."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from batchgen.constants import MAX_BODY_BYTES, PHOTO_PATH
from infra.nag import acknowledge
from infra.settings import StackSettings

STAGE_NAME = "v1"
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-Amz-Date", "X-Api-Key")
EXPOSED_HEADERS = ("Location", "X-Next-Cursor")

# Responses API Gateway produces itself (before or instead of the function) get the
# service's error body instead of API Gateway's {"message": ...}.
_MAX_BODY_MB = MAX_BODY_BYTES // (1024 * 1024)
GATEWAY_ERRORS: tuple[tuple[str, apigateway.ResponseType, str | None, str, str], ...] = (
    (
        "Throttled",
        apigateway.ResponseType.THROTTLED,
        "429",
        "Too many requests",
        "The API is receiving more requests than it accepts; retry after a short wait.",
    ),
    (
        "RequestTooLarge",
        apigateway.ResponseType.REQUEST_TOO_LARGE,
        "413",
        "Payload too large",
        f"The request body is too large; keep it under {_MAX_BODY_MB} MB.",
    ),
    (
        "Default4xx",
        apigateway.ResponseType.DEFAULT_4_XX,
        None,  # keep API Gateway's status code
        "Request rejected",
        "The request could not be routed; check the method, the path and the headers.",
    ),
    (
        "Default5xx",
        apigateway.ResponseType.DEFAULT_5_XX,
        None,
        "Service unavailable",
        f"The service could not handle the request. Retry later; bodies over {_MAX_BODY_MB} MB "
        "are rejected this way too.",
    ),
)


def _access_log_format() -> apigateway.AccessLogFormat:
    field = apigateway.AccessLogField
    return apigateway.AccessLogFormat.custom(
        json.dumps(
            {
                "requestId": field.context_request_id(),
                "ip": field.context_identity_source_ip(),
                "userAgent": field.context_identity_user_agent(),
                "requestTime": field.context_request_time(),
                "httpMethod": field.context_http_method(),
                "path": field.context_path(),
                "resourcePath": field.context_resource_path(),
                "status": field.context_status(),
                "protocol": field.context_protocol(),
                "responseLength": field.context_response_length(),
                "responseLatency": field.context_response_latency(),
                "integrationLatency": field.context_integration_latency(),
                "integrationStatus": field.context_integration_status(),
                "errorMessage": field.context_error_message_string(),
                "xrayTraceId": field.context_xray_trace_id(),
            }
        )
    )


class ServiceApi(Construct):
    """REST API (regional) with stage throttling, JSON access logs, X-Ray and CORS.

    Authentication is the JWT check in the api function, because
    /health, /openapi.json, /docs and the webhook route must stay public.
    Payloads: everything is JSON (images travel base64 inside it), so no binary
    media types. API Gateway accepts bodies up to 10 MB and answers 413 above that
    (REQUEST_TOO_LARGE below); Lambda's synchronous limit is 6 MB, so the handler
    enforces MAX_BODY_BYTES with its own 413, and a body between the two limits
    fails at the invoke and gets the DEFAULT_5XX body, which says so.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        settings: StackSettings,
        photo_handler: lambda_.IFunction | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        origins = list(settings.cors_origins)

        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=settings.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = apigateway.LambdaRestApi(
            self,
            "RestApi",
            handler=handler,
            proxy=True,
            # The stack's own name: the 5xx alarm's ApiName dimension then matches this API only.
            rest_api_name=f"{Stack.of(self).stack_name}-api",
            description="Batch image generation API",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # REST API logging (access logs included) needs the account's API Gateway CloudWatch
            # role. Retained: other APIs in the account rely on it once it is set.
            cloud_watch_role=settings.api_gateway_cloudwatch_role,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            default_cors_preflight_options=apigateway.CorsOptions(
                allow_origins=origins,
                allow_methods=apigateway.Cors.ALL_METHODS,
                allow_headers=list(ALLOWED_HEADERS),
                expose_headers=list(EXPOSED_HEADERS),
                # Cookies (the seed-003 client's session) only work with named origins, never '*'.
                allow_credentials=origins != ["*"],
            ),
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=settings.api_throttle_rate_limit,
                throttling_burst_limit=settings.api_throttle_burst_limit,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=_access_log_format(),
                tracing_enabled=True,
                logging_level=apigateway.MethodLoggingLevel.ERROR,  # execution logs: errors only
                data_trace_enabled=False,  # never log request bodies (images, prompts)
                metrics_enabled=False,
            ),
        )
        # API Gateway writes its execution logs (level ERROR) to a group named after the API and stage; it
        # would create the group itself, outside the stack and kept for ever: the stack owns it instead.
        self.execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.rest_api.rest_api_id}/{STAGE_NAME}",
            retention=settings.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api.deployment_stage.node.add_dependency(self.execution_logs)
        if photo_handler is not None:
            # The standard endpoint has its own function: a resource of its own, which API
            # Gateway matches before the {proxy+} resource that sends everything else to the api function.
            # (A proxying LambdaRestApi refuses `root.add_resource`; a Resource built on the root is allowed.)
            first, *rest = PHOTO_PATH.strip("/").split("/")
            resource: apigateway.Resource = apigateway.Resource(
                self, "PhotoRoot", parent=self.rest_api.root, path_part=first
            )
            for part in rest:
                resource = resource.add_resource(part)
            resource.add_method("POST", apigateway.LambdaIntegration(photo_handler))
            acknowledge(
                resource,
                "The standard endpoint verifies the same Bearer JWT or session cookie in its function "
                "(HS256 secret or JWKS, pinned algorithms), like every route of the api function.",
                "AwsSolutions-APIG4",
                "AwsSolutions-COG4",
            )
        cors_header = _gateway_cors_origin(origins)
        for response_id, response_type, status, title, message in GATEWAY_ERRORS:
            self.rest_api.add_gateway_response(
                f"{response_id}Response",
                type=response_type,
                status_code=status,
                response_headers={"Access-Control-Allow-Origin": cors_header} if cors_header else None,
                templates={"application/json": json.dumps({"error": title, "message": message})},
            )

        self.url_output = CfnOutput(
            self, "Url", key="ApiUrl", value=self.rest_api.url, description="Base URL of the REST API"
        )
        # The web console is static files in the api function's code, served by the same proxy.
        self.console_output = CfnOutput(
            self,
            "ConsoleUrl",
            key="ConsoleUrl",
            value=self.rest_api.url + "console/",
            description="Web console (sign in with a token)",
        )
        self._acknowledge_findings()

    def _acknowledge_findings(self) -> None:
        acknowledge(
            self.rest_api,
            "Every route is a Lambda proxy; the api function validates each body, path and query "
            "with Powertools' OpenAPI validation (pydantic) and answers 400 with per-field details, "
            "which an API Gateway request validator cannot express for a {proxy+} resource.",
            "AwsSolutions-APIG2",
        )
        acknowledge(
            self.rest_api,
            "Bearer JWTs are verified in the api function (HS256 secret or JWKS, pinned algorithms, "
            "iss/aud checks); /health, /openapi.json, /docs and the Gemini "
            "webhook must stay public, so no API Gateway authorizer or Cognito pool is attached.",
            "AwsSolutions-APIG4",
            "AwsSolutions-COG4",
        )
        acknowledge(
            self.rest_api,
            "No WAF web ACL: stage throttling and the per-user credit checks bound abuse, and a web "
            "ACL would add a fixed monthly cost to an otherwise pay-per-use service. Attach one to "
            "the stage if the API faces hostile traffic.",
            "AwsSolutions-APIG3",
        )
        acknowledge(
            self.rest_api,
            "AmazonAPIGatewayPushToCloudWatchLogs is the AWS managed policy made for API Gateway's "
            "account-level logging role; it only allows writing API Gateway's own log groups.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
        )


def _gateway_cors_origin(origins: list[str]) -> str | None:
    """Gateway responses cannot pick among several origins: '*' or the single one, else none."""
    if origins == ["*"]:
        return "'*'"
    if len(origins) == 1:
        return f"'{origins[0]}'"
    return None
