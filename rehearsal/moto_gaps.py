"""Every way the rehearsal bends moto, in one place, each with its reason.

Two kinds. TEMPLATE gaps change only the rehearsal's own copy of the synthesized template, where moto's
CloudFormation lacks a resource type or crashes on a property. SERVER gaps teach moto's IAM check what
AWS checks and moto does not: they only ever make it stricter (a request AWS would deny is denied), never
more lenient, except where moto cannot check at all, which is said.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

TEMPLATE_GAPS = {
    "AWS::SecretsManager::Secret": "moto's CloudFormation creates no secrets: the rehearsal creates each one "
    "by API (the generated JWT key as CloudFormation would: 64 letters and digits) and puts its ARN where "
    "the template refers to it",
    "AWS::ApiGateway::Method MOCK": "moto crashes on a MOCK integration (the CORS preflight) without "
    "IntegrationHttpMethod and Uri: the copy gets placeholders for both",
}
UNSUPPORTED_BY_MOTO = (
    "AWS::CloudWatch::Alarm, AWS::ApiGateway::Stage/Account/GatewayResponse, AWS::Scheduler::Schedule, "
    "AWS::Lambda::EventInvokeConfig, queue and bucket policies: moto skips them; the template assertions "
    "in tests/infrastructure check them instead, and the rehearsal plays the scheduler itself"
)
SERVER_GAPS = {
    "resources": "moto matches a policy's Resource only for S3, SQS, IAM and STS, and checks DynamoDB, "
    "Secrets Manager and SES calls against '*' (so every resource-scoped grant would be denied): the "
    "rehearsal gives moto the resource of each request (the table or index ARN, the secret ARN, the "
    "sender identity ARN)",
    "item actions": "moto checks dynamodb:TransactWriteItems and s3:DeleteObjects, which IAM does not "
    "have: AWS authorises each item (PutItem/UpdateItem/DeleteItem/ConditionCheckItem on its table, "
    "DeleteObject on each key), and so does the rehearsal; likewise multipart parts as s3:PutObject, "
    "HeadObject as s3:GetObject, and SQS's batch calls as their single actions (SendMessageBatch is "
    "sqs:SendMessage)",
    "presigned URLs": "moto cannot authenticate a query-string signature or a presigned POST's policy (it "
    "reads the Authorization header): the rehearsal checks the URL's (or the policy's) expiry, its signer's "
    "session expiry, and that the signer's role may do the action on the object with moto's own policy "
    "engine; it does not check the signature bytes",
    "assume role": "moto cannot evaluate a trust policy whose principal is a service (lambda.amazonaws.com): "
    "the rehearsal, acting as the Lambda service, assumes each function's role before IAM is enforced",
    "role sessions as principals": "a trust policy naming a role (the URL-signer role trusts the api's role) "
    "admits every session of that role in AWS; moto compares the session's ARN (assumed-role/<role>/<session>) "
    "with the role's ARN literally and refuses: the rehearsal gives moto's trust check the session's role",
    "event source mappings": "moto delivers SQS messages to a mapped function itself, in Docker: the "
    "rehearsal disables moto's delivery and plays the mapping, receiving with the function's own role",
}


def patch_template(template: dict[str, Any], secret_arns: dict[str, str]) -> dict[str, Any]:
    """The rehearsal's copy of the template with TEMPLATE_GAPS applied (`secret_arns`: logical id -> ARN)."""
    copied = copy.deepcopy(template)
    resources = copied["Resources"]
    for logical_id in secret_arns:
        del resources[logical_id]
    for resource in resources.values():
        props = resource.get("Properties", {})
        integration = props.get("Integration", {})
        if resource["Type"] == "AWS::ApiGateway::Method" and integration.get("Type") == "MOCK":
            integration.setdefault("IntegrationHttpMethod", "POST")
            integration.setdefault("Uri", "mock://cors-preflight")
    text = json.dumps(copied)
    for logical_id, secret_arn in secret_arns.items():
        text = text.replace(json.dumps({"Ref": logical_id}), json.dumps(secret_arn))
    return dict(json.loads(text))


# ------------------------------------------------------------------------------------------ server
@dataclass
class Denials:
    """Every request moto's IAM check refused, as "<principal> may not <action> on <resource>"."""

    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> list[str]:
        with self.lock:
            taken, self.seen = self.seen, []
        return taken


DENIALS = Denials()


def _as_action(base: type, action: str) -> type:
    class Request(base):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            kwargs["action"] = action
            super().__init__(**kwargs)

    return Request


def _record_denials(base: type) -> None:
    original = base.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        try:
            original(self, resource)
        except Exception:
            with DENIALS.lock:
                DENIALS.seen.append(f"{self._access_key.arn} may not {self._action} on {resource}")
            raise

    base.check_action_permitted = check_action_permitted


def _dynamodb_permissions(action: str, params: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    def arn(table: str, index: str | None = None) -> str:
        return f"{prefix}:table/{table}" + (f"/index/{index}" if index else "")

    if action == "TransactWriteItems":
        names = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
        }
        return [
            (names[kind], arn(body["TableName"]))
            for item in params.get("TransactItems", [])
            for kind, body in item.items()
        ]
    if action == "TransactGetItems":
        return [("GetItem", arn(item["Get"]["TableName"])) for item in params.get("TransactItems", [])]
    if action in ("BatchWriteItem", "BatchGetItem"):
        return [(action, arn(table)) for table in params.get("RequestItems", {})]
    if "TableName" in params:
        return [(action, arn(params["TableName"], params.get("IndexName")))]
    return [(action, "*")]


def _s3_permissions(action: str, bucket: str | None, key: str | None, body: bytes) -> list[tuple[str, str]]:
    objects = f"arn:aws:s3:::{bucket}"
    if action in ("DeleteObjects", "DeleteObject") and key is None and b"<Delete" in body:
        keys = [element.text or "" for element in ElementTree.fromstring(body).iter() if element.tag.endswith("Key")]
        return [("DeleteObject", f"{objects}/{name}") for name in keys]
    as_put = {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
    renamed = {"HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket"}
    action = "PutObject" if action in as_put else renamed.get(action, action)
    return [(action, f"{objects}/{key}" if key else (objects if bucket else "*"))]


# IAM has no actions of their own for SQS's batch calls: each is authorised as its single action.
SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def install_server_gaps() -> None:
    """SERVER_GAPS, on the moto server of this process (before it serves its first request)."""
    from moto.core import authorization
    from moto.dynamodb.responses import DynamoHandler
    from moto.iam.access_control import IAMRequest, S3IAMRequest
    from moto.s3.responses import S3Response
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.ses.responses import EmailResponse
    from moto.sqs.responses import SQSResponse

    _record_denials(IAMRequest)
    _record_denials(S3IAMRequest)
    mixin = authorization.ActionAuthenticatorMixin

    def dynamodb_authorize(self: Any, resource: str = "*") -> None:
        prefix = f"arn:aws:dynamodb:{self.region}:{self.current_account}"
        params = getattr(self, "params", None) or json.loads(self.body or "{}")
        for action, arn in _dynamodb_permissions(self._get_action(), params, prefix):
            mixin._authenticate_and_authorize_action(self, _as_action(IAMRequest, action), arn)

    def secret_resource(self: Any) -> str:
        secret_id = str(self._get_param("SecretId") or "")
        if secret_id.startswith("arn:"):
            return secret_id
        try:
            return str(self.backend.describe_secret(secret_id).arn)
        except Exception:
            return "*"

    def ses_resource(self: Any) -> str:
        source = str(self._get_param("Source") or "")
        address = re.sub(r".*<(.+)>.*", r"\1", source)
        return f"arn:aws:ses:{self.region}:{self.current_account}:identity/{address}" if address else "*"

    def s3_authorize(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if mixin.request_count < _no_auth_count():
            mixin.request_count += 1
            return
        if "Authorization" not in self.headers and _checked_as_presigned(self, bucket_name, key_name):
            return
        for action, arn in _s3_permissions(str(self.data.get("Action")), bucket_name, key_name, self.body or b""):
            mixin._authenticate_and_authorize_action(self, _as_action(S3IAMRequest, action), arn)

    def sqs_authorize(self: Any, resource: str = "*") -> None:
        action = SQS_BATCH_ACTIONS.get(self._get_action(), self._get_action())
        mixin._authenticate_and_authorize_action(self, _as_action(IAMRequest, action), resource)

    IAMRequest._check_role_trust_relationship = _trust_of_role_sessions
    DynamoHandler._authenticate_and_authorize_normal_action = dynamodb_authorize
    SQSResponse._authenticate_and_authorize_normal_action = sqs_authorize
    SecretsManagerResponse._determine_resource = secret_resource
    EmailResponse._determine_resource = ses_resource
    S3Response._authenticate_and_authorize_s3_action = s3_authorize


def _trust_of_role_sessions(self: Any, role_arn: str) -> bool:
    """moto's trust check, with a role session (assumed-role/<role>/<session>) as its role, as AWS does."""
    from moto.iam.access_control import IAMPolicy, PermissionResult, format_incoming_conditional_values

    caller = self._access_key.arn
    session = re.match(r"arn:[^:]+:sts::\d+:assumed-role/([^/]+)/", caller)
    principal = self.backend.get_role(session.group(1)).arn if session else caller
    policy = IAMPolicy(self.backend.get_role_by_arn(role_arn).assume_role_policy_document)
    conditions = format_incoming_conditional_values(self._data)
    return bool(policy.is_action_permitted(self._action, role_arn, principal, conditions) == PermissionResult.PERMITTED)


def _no_auth_count() -> float:
    from moto import settings

    return float(settings.INITIAL_NO_AUTH_ACTION_COUNT)


def _checked_as_presigned(response: Any, bucket: str | None, key: str | None) -> bool:
    """True when the request is a presigned URL or a presigned POST form, once checked (or refused)."""
    # The URL's own query: moto's `querystring` holds the parsed body instead when a PUT says it is a form.
    if "X-Amz-Credential" in parse_qs(urlparse(response.uri).query):
        _check_presigned(response, bucket, key)
        return True
    form = {str(name).lower(): str(value) for name, value in (getattr(response, "form_data", None) or {}).items()}
    if response.method == "POST" and "x-amz-credential" in form:
        _check_presigned_post(response, bucket, form)
        return True
    return False


def _check_presigned(response: Any, bucket: str | None, key: str | None) -> None:
    """A presigned request: not expired, and its signer may do the action (moto's policy engine)."""
    import datetime

    query = {name: values[0] for name, values in parse_qs(urlparse(response.uri).query).items()}
    signed_at = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    expires = signed_at + datetime.timedelta(seconds=int(query["X-Amz-Expires"]))
    action = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "GetObject"}.get(response.method, response.method)
    credential, token = query["X-Amz-Credential"], query.get("X-Amz-Security-Token", "")
    _check_signed_request(response, credential, token, expires, action, f"arn:aws:s3:::{bucket}/{key}")


def _check_presigned_post(response: Any, bucket: str | None, form: dict[str, str]) -> None:
    """A presigned POST (a browser-style upload form): its policy not expired, and its signer may put the
    form's key (moto's policy engine); the policy's conditions are the local S3's to check."""
    import base64
    import datetime

    try:
        expiration = json.loads(base64.b64decode(form.get("policy", "")))["expiration"]
        expires = datetime.datetime.fromisoformat(str(expiration).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        expires = datetime.datetime.min.replace(tzinfo=datetime.UTC)  # no readable policy: refused
    resource = f"arn:aws:s3:::{bucket}/{form.get('key', '')}"
    _check_signed_request(
        response, form["x-amz-credential"], form.get("x-amz-security-token", ""), expires, "PutObject", resource
    )


def _check_signed_request(response: Any, credential: str, token: str, expires: Any, action: str, resource: str) -> None:
    """Refused (AccessDenied) unless unexpired, within its signer's session, and allowed by its role."""
    import datetime

    from moto.iam.access_control import IAMPolicy, PermissionResult, create_access_key

    signer = create_access_key(
        account_id=response.current_account,
        partition="aws",
        access_key_id=credential.split("/")[0],
        headers={"X-Amz-Security-Token": token},
    )
    allowed = [IAMPolicy(policy).is_action_permitted(f"s3:{action}", resource) for policy in signer.collect_policies()]
    now = datetime.datetime.now(datetime.UTC)
    ended = now > expires or now > _session_expiry(response.current_account, signer)
    refused = ended or PermissionResult.DENIED in allowed
    if refused or PermissionResult.PERMITTED not in allowed:
        with DENIALS.lock:
            DENIALS.seen.append(f"{signer.arn} (presigned URL) may not s3:{action} on {resource}")
        from moto.s3.exceptions import S3AccessDeniedError

        raise S3AccessDeniedError


def _session_expiry(account: str, signer: Any) -> Any:
    """When the signer's credentials end (S3 refuses a URL whose signer's session has ended, whatever the
    URL's own expiry says); far in the future for an IAM user's keys."""
    import datetime

    from moto.sts.models import sts_backends

    for session in sts_backends[account]["aws"].assumed_roles:
        if session.access_key_id == signer._access_key_id:
            expiration = session.expiration
            return expiration if expiration.tzinfo else expiration.replace(tzinfo=datetime.UTC)
    return datetime.datetime.max.replace(tzinfo=datetime.UTC)
