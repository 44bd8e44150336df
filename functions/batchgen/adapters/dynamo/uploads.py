"""Bulk input uploads: one row per presigned file, naming the one batch that may read it."""

from __future__ import annotations

from botocore.exceptions import ClientError

from batchgen.adapters.dynamo.codec import META_SK, Table, error_code, key, marshal, upload_pk, values
from batchgen.models.records import UploadRecord


class DynamoUploads:
    """The `Uploads` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def create_upload(self, upload: UploadRecord, expires_at_epoch: int) -> None:
        row = upload.model_dump(mode="python")
        row.update(PK=upload_pk(upload.uploadId), SK=META_SK, entity="upload", expiresAt=expires_at_epoch)
        self.table.put_new(marshal(row))

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = self.table.get(upload_pk(upload_id), META_SK)
        return UploadRecord.model_validate(row) if row is not None else None

    def claim_upload(self, upload_id: str, user_id: str, batch_id: str) -> bool:
        """The upload becomes this batch's input, once: False when it is another user's or another
        batch's (a repeated claim by the same batch, a duplicate delivery, succeeds)."""
        try:
            self.table.db.update_item(
                TableName=self.table.name,
                Key=key(upload_pk(upload_id), META_SK),
                UpdateExpression="SET usedBy = :batch",
                ConditionExpression="attribute_exists(PK) AND userId = :user AND "
                "(attribute_not_exists(usedBy) OR usedBy = :batch)",
                ExpressionAttributeValues=values({":batch": batch_id, ":user": user_id}),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True
