"""The moto stand-in's fast reads (local/moto_speed.py): the same bytes as moto's own serialiser and the
same items as its whole-table query (Query was 55 % of the local runtime's CPU in the load run)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from local.moto_speed import make_dynamodb_reads_fast

ALL_TYPES = {
    "n": {"N": "1.50"},
    "b": {"B": b"\x00\xff"},
    "bs": {"BS": [b"x", b"y"]},
    "l": {"L": [{"S": "x"}, {"NULL": True}, {"N": "3"}]},
    "m": {"M": {"k": {"BOOL": False}, "bb": {"B": b"zz"}, "e": {"S": 'é ✓ "quoted" \\ \n'}}},
    "ss": {"SS": ["p", "q"]},
    "ns": {"NS": ["1", "2.5"]},
}


@pytest.fixture
def table(aws):
    name = aws.environment["TABLE_NAME"]
    client = boto3.client("dynamodb")
    for partition in ("BATCH#a", "BATCH#b", "USER#c"):
        for n in range(7):
            item = {"PK": {"S": partition}, "SK": {"S": f"ITEM#{n:03d}"}, **ALL_TYPES, "i": {"N": str(n)}}
            if n % 2:  # in the sparse index, under two index partitions
                item |= {"GSI3PK": {"S": f"ACTIVE#{n % 4}"}, "GSI3SK": {"S": f"{n:03d}#{partition}"}}
            client.put_item(TableName=name, Item=item)
    return name


def _raw_bodies(client: Any, reads: list[Callable[[], Any]]) -> list[bytes]:
    bodies: list[bytes] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(response_dict["body"])

    client.meta.events.register("before-parse.dynamodb.*", keep)
    try:
        for read in reads:
            read()
    finally:
        client.meta.events.unregister("before-parse.dynamodb.*", keep)
    return bodies


def _reads(client: Any, name: str) -> list[Callable[[], Any]]:
    key = {"PK": {"S": "BATCH#a"}, "SK": {"S": "ITEM#003"}}

    def query(values: dict[str, Any] | None = None, **extra: Any) -> Callable[[], Any]:
        params = {
            "TableName": name,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "BATCH#a"}, **(values or {})},
            **extra,
        }
        return lambda: client.query(**params)

    return [
        query(),
        query(ScanIndexForward=False, Limit=3),
        query(Limit=2, ExclusiveStartKey=key),
        query(KeyConditionExpression="PK = :pk AND begins_with(SK, :p)", values={":p": {"S": "ITEM#00"}}),
        query(FilterExpression="i > :two", values={":two": {"N": "2"}}),
        query(ProjectionExpression="SK, m.bb, l[0]"),
        query(Select="COUNT"),
        query(ReturnConsumedCapacity="TOTAL"),
        lambda: client.query(
            TableName=name, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "NONE"}}
        ),
        lambda: client.query(
            TableName=name,
            IndexName="ActiveBatches",
            KeyConditionExpression="GSI3PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "ACTIVE#1"}},
        ),
        lambda: client.query(
            TableName=name,
            IndexName="ActiveBatches",
            KeyConditionExpression="GSI3PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "ACTIVE#3"}},
            ScanIndexForward=False,
            Limit=2,
        ),
        lambda: client.scan(TableName=name, Limit=5),
        lambda: client.get_item(TableName=name, Key=key),
        lambda: client.get_item(TableName=name, Key={"PK": {"S": "BATCH#a"}, "SK": {"S": "missing"}}),
        lambda: client.batch_get_item(RequestItems={name: {"Keys": [key]}}),
    ]


def test_fast_reads_answer_exactly_what_moto_answers(table, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoResult

    client = boto3.client("dynamodb")
    make_dynamodb_reads_fast()
    fast = _raw_bodies(client, _reads(client, table))
    from moto.dynamodb.models import table as table_model
    from moto.dynamodb.responses import DynamoHandler

    monkeypatch.setattr(table_model, "copy", copy)
    patched_methods = (
        (DynamoResult, "execute_result"),
        (Table, "query"),
        (Table, "all_items"),
        (DynamoHandler, "query"),
        (DynamoHandler, "scan"),
    )
    for owner, name in patched_methods:
        patched = getattr(owner, name)
        assert getattr(patched, "__batchgen_fast__", False)
        monkeypatch.setattr(owner, name, patched.__wrapped__)  # moto's own, for the comparison
    slow = _raw_bodies(client, _reads(client, table))
    assert len(fast) == len(slow) == 15
    for n, (mine, moto) in enumerate(zip(fast, slow, strict=True)):
        assert mine == moto, f"read {n}"


def test_a_partition_query_does_not_grow_with_the_rest_of_the_table(table) -> None:
    make_dynamodb_reads_fast()
    client = boto3.client("dynamodb")

    def one_query() -> float:
        started = time.perf_counter()
        client.query(TableName=table, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "X"}})
        return time.perf_counter() - started

    small = min(one_query() for _ in range(5))
    for start in range(0, 3000, 25):
        client.batch_write_item(
            RequestItems={
                table: [
                    {"PutRequest": {"Item": {"PK": {"S": f"OTHER#{n}"}, "SK": {"S": "x"}}}}
                    for n in range(start, start + 25)
                ]
            }
        )
    large = min(one_query() for _ in range(5))
    assert large < small * 3 + 0.005  # moto's own query sorts all 3,021 items each time: ~20x slower
