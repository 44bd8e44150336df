"""Batch templates, under their owner's key: another user reads nothing."""

from __future__ import annotations

from botocore.exceptions import ClientError

from batchgen.adapters.dynamo.codec import TEMPLATE_PREFIX, Table, error_code, key, marshal, user_pk, values
from batchgen.models.records import TemplateRecord


class DynamoTemplates:
    """The `Templates` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def put_template(self, template: TemplateRecord, *, replace: bool) -> bool:
        """Create (the id must be new) or replace (the template must exist); False when it does not hold."""
        row = template.model_dump(mode="python")
        row.update(PK=user_pk(template.userId), SK=f"{TEMPLATE_PREFIX}{template.templateId}", entity="template")
        try:
            self.table.db.put_item(
                TableName=self.table.name,
                Item=marshal(row),
                ConditionExpression="attribute_exists(PK)" if replace else "attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_template(self, user_id: str, template_id: str) -> TemplateRecord | None:
        row = self.table.get(user_pk(user_id), f"{TEMPLATE_PREFIX}{template_id}")
        return TemplateRecord.model_validate(row) if row is not None else None

    def list_templates(self, user_id: str) -> list[TemplateRecord]:
        rows = self.table.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=values({":pk": user_pk(user_id), ":prefix": TEMPLATE_PREFIX}),
        )
        return [TemplateRecord.model_validate(row) for row in rows]

    def delete_template(self, user_id: str, template_id: str) -> bool:
        try:
            self.table.db.delete_item(
                TableName=self.table.name,
                Key=key(user_pk(user_id), f"{TEMPLATE_PREFIX}{template_id}"),
                ConditionExpression="attribute_exists(PK)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True
