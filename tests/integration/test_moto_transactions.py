"""The moto stand-in's transactions (local/moto_atomic.py): all-or-nothing, and no whole-table copies
(regression: moto 5.2 deep-copied the table once per transaction item and kept the copies,
so the local runtime grew to 10-15 GB in a 60 s load)."""

from __future__ import annotations

import tracemalloc

import boto3
import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def table(aws):
    return aws.environment["TABLE_NAME"]


def _put(name: str, pk: str, sk: str, value: int) -> dict:
    item = {"PK": {"S": pk}, "SK": {"S": sk}, "value": {"N": str(value)}}
    return {"Put": {"TableName": name, "Item": item}}


def _items(client, name: str) -> dict[tuple[str, str], str]:
    rows = client.scan(TableName=name)["Items"]
    return {(row["PK"]["S"], row["SK"]["S"]): row.get("value", {}).get("N", "") for row in rows}


def test_a_cancelled_transaction_changes_nothing_and_a_passing_one_everything(table):
    client = boto3.client("dynamodb")
    client.transact_write_items(TransactItems=[_put(table, "A", "1", 1), _put(table, "A", "2", 2)])
    before = _items(client, table)
    changes = [
        _put(table, "B", "1", 10),  # new item
        {
            "Update": {
                "TableName": table,
                "Key": {"PK": {"S": "A"}, "SK": {"S": "1"}},
                "UpdateExpression": "SET #v = :v",
                "ExpressionAttributeNames": {"#v": "value"},
                "ExpressionAttributeValues": {":v": {"N": "99"}},
            }
        },
        {"Delete": {"TableName": table, "Key": {"PK": {"S": "A"}, "SK": {"S": "2"}}}},
    ]
    failing = {
        "ConditionCheck": {
            "TableName": table,
            "Key": {"PK": {"S": "C"}, "SK": {"S": "1"}},
            "ConditionExpression": "attribute_exists(PK)",
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[*changes, failing])
    assert _items(client, table) == before
    client.transact_write_items(TransactItems=changes)
    assert _items(client, table) == {("A", "1"): "99", ("B", "1"): "10"}


def test_transactions_never_copy_the_table(table, monkeypatch):
    from moto.dynamodb.models.table import Table

    def refuse(self, memo):
        raise AssertionError("a whole-table deep copy")

    monkeypatch.setattr(Table, "__deepcopy__", refuse, raising=False)
    client = boto3.client("dynamodb")
    client.transact_write_items(TransactItems=[_put(table, "P", str(n), n) for n in range(25)])


def test_memory_stays_flat_over_many_transactions_on_a_large_table(table):
    client = boto3.client("dynamodb")
    for start in range(0, 2000, 100):
        client.transact_write_items(TransactItems=[_put(table, "big", f"{n:05}", n) for n in range(start, start + 100)])
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for round_ in range(40):
            client.transact_write_items(TransactItems=[_put(table, f"t{round_}", str(n), n) for n in range(20)])
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    # 800 small items are well under 5 MB; one copy of the 2,000-item table per item was hundreds of MB.
    assert grown < 5_000_000, f"{grown / 1e6:.1f} MB retained by 40 transactions"
