"""Credits: a user's balance row and ledger entries. Every balance change writes its ledger entry in the
same transaction, so the ledger sums to the balance; the writes below are shared with the unit of work,
whose transactions move credits together with a batch or a generation."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.dynamo.codec import (
    BALANCE_SK,
    LEDGER_PREFIX,
    Table,
    cancellation_codes,
    error_code,
    key,
    marshal,
    unmarshal,
    user_pk,
    values,
)
from batchgen.domain.errors import ConcurrentChange, InsufficientCredits
from batchgen.domain.ids import now_iso
from batchgen.models.records import LedgerRecord


def debit(table: str, user_id: str, amount: Decimal, at: str) -> dict[str, Any]:
    """A transaction's debit: never below zero; a failure returns the balance it saw."""
    return {
        "Update": {
            "TableName": table,
            "Key": key(user_pk(user_id), BALANCE_SK),
            "UpdateExpression": "SET balance = balance - :cost, updatedAt = :at",
            "ConditionExpression": "attribute_exists(balance) AND balance >= :cost",
            "ExpressionAttributeValues": values({":cost": amount, ":at": at}),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def credit(table: str, user_id: str, amount: Decimal, at: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": key(user_pk(user_id), BALANCE_SK),
            "UpdateExpression": "SET balance = if_not_exists(balance, :zero) + :amount, updatedAt = :at",
            "ExpressionAttributeValues": values({":zero": Decimal(0), ":amount": amount, ":at": at}),
        }
    }


def ledger_entry(
    table: str, user_id: str, delta: Decimal, reason: str, batch_id: str | None, at: str
) -> dict[str, Any]:
    row = {
        "PK": user_pk(user_id),
        "SK": f"{LEDGER_PREFIX}{at}#{secrets.token_hex(4)}",
        "entity": "ledger",
        "userId": user_id,
        "at": at,
        "delta": delta,
        "reason": reason,
        "batchId": batch_id,
    }
    return {"Put": {"TableName": table, "Item": marshal(row)}}


def debit_failed(exc: ClientError, position: int) -> bool:
    """The debit at `position` of a cancelled transaction failed its condition (the balance was short)."""
    reasons = exc.response.get("CancellationReasons", [])
    return len(reasons) > position and reasons[position].get("Code") == "ConditionalCheckFailed"


def balance_seen(exc: ClientError, position: int) -> Decimal | None:
    """The balance a failed debit saw, when DynamoDB returned it with the failure."""
    reasons = exc.response.get("CancellationReasons", [])
    old = reasons[position].get("Item") if len(reasons) > position else None
    return Decimal(str(unmarshal(old).get("balance", 0))) if old else None


class DynamoCredits:
    """The `Credits` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def get_balance(self, user_id: str) -> Decimal:
        row = self.table.get(user_pk(user_id), BALANCE_SK)
        return Decimal(str(row["balance"])) if row is not None else Decimal(0)

    def adjust_balance(self, user_id: str, delta: Decimal, reason: str) -> Decimal:
        """Admin credit/debit with its ledger entry; a debit never takes the balance below zero."""
        at = now_iso()
        update: dict[str, Any] = credit(self.table.name, user_id, delta, at)
        if delta < 0:
            update["Update"]["ConditionExpression"] = "attribute_exists(balance) AND balance >= :need"
            update["Update"]["ExpressionAttributeValues"].update(values({":need": -delta}))
        try:
            self.table.db.transact_write_items(
                TransactItems=[update, ledger_entry(self.table.name, user_id, delta, reason, None, at)]
            )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                if cancellation_codes(exc)[:1] == ["ConditionalCheckFailed"]:
                    available = self.get_balance(user_id)
                    raise InsufficientCredits(
                        -delta,
                        available,
                        f"A debit of {-delta} credits would take the balance of user '{user_id}' below zero; "
                        f"their balance is {available}, so debit at most that.",
                    ) from exc
                raise ConcurrentChange("balance changed concurrently") from exc
            raise
        return self.get_balance(user_id)

    def list_ledger(self, user_id: str, limit: int = constants.LEDGER_PAGE) -> list[LedgerRecord]:
        response = self.table.db.query(
            TableName=self.table.name,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=values({":pk": user_pk(user_id), ":prefix": LEDGER_PREFIX}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [LedgerRecord.model_validate(unmarshal(row)) for row in response.get("Items", [])]
