"""Creates the tables, queues and bucket from `batchgen.constants` (the definitions the CDK stack uses).

Used by the local runtime against moto's server and by the tests under `mock_aws`. Each step leaves
what already exists as it is (a runtime restarted on its kept state provisions again).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from batchgen import constants


def create_table(dynamodb: Any, table_name: str) -> None:
    spec = constants.TABLE
    key_names = {spec.partition_key, spec.sort_key}
    for index in spec.indexes:
        key_names |= {index.partition_key, index.sort_key}
    if table_name in dynamodb.list_tables()["TableNames"]:
        return
    dynamodb.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in sorted(key_names)],
        KeySchema=[
            {"AttributeName": spec.partition_key, "KeyType": "HASH"},
            {"AttributeName": spec.sort_key, "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": _projection(index),
            }
            for index in spec.indexes
        ],
    )
    dynamodb.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
    )


def _projection(index: constants.IndexSpec) -> dict[str, Any]:
    projection: dict[str, Any] = {"ProjectionType": index.projection}
    if index.included:
        projection["NonKeyAttributes"] = list(index.included)
    return projection


def create_queues(sqs: Any, visibility_timeout: int | None = None) -> dict[str, str]:
    """Each queue with its DLQ and redrive policy; returns QueueSpec.name -> URL."""
    urls: dict[str, str] = {}
    for queue in constants.QUEUES:
        dlq_url = sqs.create_queue(QueueName=queue.dead_letter_name)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        timeout = visibility_timeout or constants.queue_visibility_timeout_seconds(queue)
        attributes = {
            "VisibilityTimeout": str(timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(queue.max_receive_count)}
            ),
        }
        try:
            urls[queue.name] = sqs.create_queue(QueueName=queue.name, Attributes=attributes)["QueueUrl"]
        except ClientError as exc:  # a kept queue whose settings changed since (SQS_VISIBILITY_TIMEOUT)
            if "QueueAlreadyExists" not in str(exc) and "QueueNameExists" not in str(exc):
                raise
            urls[queue.name] = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
            sqs.set_queue_attributes(QueueUrl=urls[queue.name], Attributes=attributes)
        urls[queue.dead_letter_name] = dlq_url
    return urls


def create_bucket(s3: Any, bucket_name: str) -> None:
    try:
        s3.create_bucket(Bucket=bucket_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise


def provision(
    *,
    table_name: str = constants.TABLE.default_name,
    bucket_name: str = constants.BUCKET_DEFAULT_NAME,
    visibility_timeout: int | None = None,
    settings: dict[str, str] | None = None,
    session: boto3.session.Session | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Creates everything; returns (the functions' environment, every queue URL incl. DLQs)."""
    session = session or boto3.session.Session()
    create_table(session.client("dynamodb"), table_name)
    create_bucket(session.client("s3"), bucket_name)
    queue_urls = create_queues(session.client("sqs"), visibility_timeout)
    sender = (settings or {}).get(constants.ENV_NOTIFY_EMAIL_FROM, constants.NOTIFY_EMAIL_FROM_DEFAULT)
    session.client("ses").verify_email_identity(EmailAddress=sender)  # moto's SES sends from verified ones
    environment = constants.runtime_environment(
        table_name=table_name, bucket_name=bucket_name, queue_urls=queue_urls, settings=settings
    )
    return environment, queue_urls
