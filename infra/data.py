"""State: the single DynamoDB table and the S3 bucket for input and staged images."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from batchgen.constants import (
    INPUT_EXPIRY_DAYS,
    INPUT_PREFIX,
    RESULTS_PREFIX,
    STAGING_EXPIRY_DAYS,
    STAGING_PREFIX,
    TABLE,
    UPLOADS_EXPIRY_DAYS,
    UPLOADS_PREFIX,
)
from infra.nag import acknowledge


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class DataStore(Construct):
    """Batches, items, balances, ledger and idempotency records (one table), images (one bucket).

    Physical names are left to CloudFormation: the table is retained on stack
    deletion, and a fixed name would block re-creating the stack next to it.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=_string(TABLE.partition_key),
            sort_key=_string(TABLE.sort_key),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=TABLE.ttl_attribute,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in TABLE.indexes:
            self.table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_string(index.partition_key),
                sort_key=_string(index.sort_key),
                projection_type=dynamodb.ProjectionType(index.projection),
                non_key_attributes=list(index.included) or None,
            )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            # Retained, but it empties itself: every object expires by the rules below.
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-staging",
                    prefix=STAGING_PREFIX,
                    expiration=Duration.days(STAGING_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-uploads",  # bulk input files: read once by the ingest step
                    prefix=UPLOADS_PREFIX,
                    expiration=Duration.days(UPLOADS_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-results",  # results manifests: written again on request once expired
                    prefix=RESULTS_PREFIX,
                    expiration=Duration.days(INPUT_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-inputs",
                    prefix=INPUT_PREFIX,
                    expiration=Duration.days(INPUT_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
        acknowledge(
            self.bucket,
            "Only the service's own functions touch this bucket, through IAM roles, and every object "
            "in it is transient (inputs and staged results expire by lifecycle). Object-level audit, "
            "if required, is better served by CloudTrail data events than by a second logging bucket.",
            "AwsSolutions-S1",
        )
