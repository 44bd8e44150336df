"""The /batch/* routes through the real handler against moto (the seed-000 contract)."""

from decimal import Decimal
from typing import Any

import pytest

from batchgen.adapters.dynamo import get_stores
from batchgen.domain import ids, jobs
from batchgen.domain.outcomes import ItemSuccess
from batchgen.handlers.services import live_services
from batchgen.usecases.pipeline import settle
from tests.conftest import grant, make_token
from tests.helpers import batch_body, png_base64, png_data_url, stored


def ledger_sum(user_id: str) -> Decimal:
    return sum((entry.delta for entry in get_stores().credits.list_ledger(user_id, 1000)), Decimal(0))


def test_create_charges_records_items_stores_images_and_queues_one_submit(api, aws):
    # Given a user with 10 credits
    grant("user-1", 10)
    body = {
        "type": "product",
        "requests": [{"id": "front", "prompt": "front", "imageBase64": png_base64()}, {"prompt": "side"}],
        "displayName": "shoes",
        "quality": "2k",
        "aspectRatio": "3:4",
    }
    # When they create a 2-request product batch
    created = api("POST", "/batch/create", body)
    # Then it is accepted, charged 2 x 3.75 (product 2.5 x 1.5 for 2K), and points at its status
    assert created.status == 202, created.body
    batch_id = created.body["id"]
    assert created.headers["Location"] == f"/batch/status/{batch_id}"
    assert created.body["batchId"] == batch_id
    assert created.body["status"] == "pending"
    assert created.body["type"] == "batch-product"
    assert created.body["requestCount"] == 2
    assert created.body["creditCost"] == 7.5
    assert [job["clientId"] for job in created.body["jobs"]] == ["front", "request-2"]
    assert get_stores().credits.get_balance("user-1") == Decimal("2.5")
    assert ledger_sum("user-1") == Decimal("2.5")
    assert aws.queue_messages("batchgen-submit") == [{"batchId": batch_id}]
    assert aws.s3_keys("inputs/") == [f"inputs/{batch_id}/{created.body['jobs'][0]['generationId']}"]


def test_status_has_every_field_of_the_spec(api, aws):
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(3, displayName="three")).body["id"]
    status = api("GET", f"/batch/status/{batch_id}")
    assert status.status == 200
    body = status.body
    for key in (
        "id",
        "batchId",
        "status",
        "type",
        "displayName",
        "model",
        "createdAt",
        "updatedAt",
        "completedAt",
        "requestCount",
        "successCount",
        "failCount",
        "creditCost",
        "refundedCredits",
        "results",
        "errors",
        "items",
        "summary",
        "isComplete",
        "geminiState",
    ):
        assert key in body, key
    assert body["status"] == "pending" and body["isComplete"] is False
    assert body["model"] == "gemini-3.1-flash-image"
    assert body["createdAt"].endswith("Z")
    assert body["summary"] == {"total": 3, "pending": 3, "processing": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert [item["clientId"] for item in body["items"]] == ["request-1", "request-2", "request-3"]
    assert body["results"] == [] and body["errors"] == []


def test_status_of_a_small_running_batch_is_one_read_with_exact_counts(api, aws):
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(3)).body["id"]
    assert get_stores().items.record_successes(batch_id, [ItemSuccess(1, text="t")])
    assert get_stores().jobs.change_job(batch_id, 0, jobs.record_job("batches/1", None, ids.now_iso()))
    client = get_stores().batches.table.db
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.dynamodb", count)
    try:
        body = api("GET", f"/batch/status/{batch_id}").body
    finally:
        client.meta.events.unregister("before-call.dynamodb", count)
    assert calls == ["Query"]  # the batch's row, its counter rows, its items and its job row, in key order
    assert body["successCount"] == 1 and body["summary"]["completed"] == 1 and body["geminiState"] is not None
    assert [item["status"] for item in body["items"]] == ["processing", "success", "processing"]


def test_fractional_prices_and_text_batches(api, aws):
    grant("user-1", "1.5")
    created = api("POST", "/batch/create", batch_body(3, batch_type="text"))
    assert created.status == 202
    assert created.body["creditCost"] == 1.5
    assert get_stores().credits.get_balance("user-1") == Decimal(0)


def test_shared_prompt_lets_requests_omit_their_own(api, aws):
    grant("user-1", 10)
    body = {"type": "food", "prompt": "a bowl of ramen", "requests": [{}, {"prompt": "top view"}]}
    assert api("POST", "/batch/create", body).status == 202


def test_insufficient_credits_is_402_with_required_and_available_and_changes_nothing(api, aws):
    grant("user-1", 3)
    response = api(
        "POST",
        "/batch/create",
        batch_body(2, requests=None) | {"requests": [{"prompt": "a", "imageBase64": png_data_url()}, {"prompt": "b"}]},
    )
    assert response.status == 402
    assert response.body["error"] == "Insufficient credits"
    assert response.body["required"] == 4 and response.body["available"] == 3
    assert get_stores().credits.get_balance("user-1") == Decimal(3)
    assert aws.queue_messages("batchgen-submit") == []
    assert aws.s3_keys("inputs/") == []  # the uploaded input image was removed again
    assert api("GET", "/batch/history").body == []


def test_user_without_any_balance_gets_402(api, aws):
    response = api("POST", "/batch/create", batch_body(1))
    assert response.status == 402 and response.body["available"] == 0


def test_admin_cannot_create(api, aws):
    grant("admin-1", 100)
    response = api("POST", "/batch/create", batch_body(1), token=make_token("admin-1", role="admin"))
    assert response.status == 403
    assert response.body["error"] == "Forbidden"


def test_another_users_batch_reads_as_not_found(api, aws):
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(1)).body["id"]
    stranger = make_token("user-2")
    for method, path in (
        ("GET", f"/batch/status/{batch_id}"),
        ("POST", f"/batch/{batch_id}/cancel"),
        ("DELETE", f"/batch/{batch_id}"),
    ):
        response = api(method, path, token=stranger)
        assert response.status == 404, (method, path)
        assert response.body["message"] == f"No batch with id '{batch_id}' was found."
    assert api("GET", "/batch/status/batch_0000000000000_0123456789").status == 404
    assert api("GET", "/batch/status/nonsense").status == 404


def test_history_is_newest_first_with_cursor_and_filters(api, aws):
    grant("user-1", 100)
    created = [
        api("POST", "/batch/create", batch_body(1, batch_type=t)).body["id"]
        for t in ("food", "text", "food", "character", "food")
    ]
    first = api("GET", "/batch/history", query="limit=2")
    assert first.status == 200
    assert [entry["id"] for entry in first.body] == created[::-1][:2]
    assert set(first.body[0]) == {
        "id",
        "status",
        "type",
        "displayName",
        "createdAt",
        "requestCount",
        "successCount",
        "failCount",
        "creditCost",
        "refundedCredits",
        "tier",
        "deadline",
        "eta",
        "topUpCredits",
    }
    cursor = first.headers["X-Next-Cursor"]
    second = api("GET", "/batch/history", query=f"limit=2&cursor={cursor}")
    assert [entry["id"] for entry in second.body] == created[::-1][2:4]
    third = api("GET", "/batch/history", query=f"limit=2&cursor={second.headers['X-Next-Cursor']}")
    assert [entry["id"] for entry in third.body] == created[:1]
    assert "X-Next-Cursor" not in third.headers
    foods = api("GET", "/batch/history", query="type=food&limit=2")
    assert [entry["id"] for entry in foods.body] == [created[4], created[2]]
    more_foods = api("GET", "/batch/history", query=f"type=batch-food&limit=2&cursor={foods.headers['X-Next-Cursor']}")
    assert [entry["id"] for entry in more_foods.body] == [created[0]]
    assert api("GET", "/batch/history", query="status=cancelled").body == []
    assert api("GET", "/batch/history", token=make_token("user-2")).body == []


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=abc", "status=done", "type=video", "cursor=%%%"],
)
def test_history_rejects_bad_query(api, aws, query):
    response = api("GET", "/batch/history", query=query)
    assert response.status == 400, response.body
    assert response.body["error"] and response.body["message"]


def test_cancel_refunds_every_open_item_once_and_is_409_after(api, aws):
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(3)).body["id"]
    cancelled = api("POST", f"/batch/{batch_id}/cancel")
    assert cancelled.status == 200
    assert cancelled.body["status"] == "cancelled"
    assert cancelled.body["refundedCredits"] == 6
    assert cancelled.body["failCount"] == 3
    assert cancelled.body["completedAt"] is not None and cancelled.body["isComplete"] is True
    assert {item["status"] for item in cancelled.body["items"]} == {"cancelled"}
    assert len(cancelled.body["errors"]) == 3 and cancelled.body["errors"][0].startswith("Request request-1:")
    assert get_stores().credits.get_balance("user-1") == Decimal(10)
    again = api("POST", f"/batch/{batch_id}/cancel")
    assert again.status == 409
    assert get_stores().credits.get_balance("user-1") == Decimal(10)
    assert ledger_sum("user-1") == Decimal(10)


def test_cancel_keeps_succeeded_items_and_refunds_the_rest(api, aws):
    grant("user-1", 10)
    created = api("POST", "/batch/create", batch_body(3)).body
    repository = get_stores()
    assert settle.record_success(live_services(), created["id"], ItemSuccess(0, image_url="https://img/0.png"))
    cancelled = api("POST", f"/batch/{created['id']}/cancel").body
    assert cancelled["refundedCredits"] == 4
    assert cancelled["results"] == ["https://img/0.png"]
    assert cancelled["successCount"] == 1 and cancelled["failCount"] == 2
    assert repository.credits.get_balance("user-1") == Decimal(8)


def test_a_cancelled_batch_counts_its_unfinished_items_as_cancelled_not_failed(api, aws):
    grant("user-1", 10)
    created = api("POST", "/batch/create", batch_body(4)).body
    batch_id = created["id"]
    services = live_services()
    assert settle.record_success(services, batch_id, ItemSuccess(0, image_url="https://img/0.png"))
    settle.fail_items(services, batch_id, {1: "blocked by Gemini"}, reason="item failed")
    cancelled = api("POST", f"/batch/{batch_id}/cancel").body
    assert cancelled["summary"] == {
        "total": 4, "pending": 0, "processing": 0, "completed": 1, "failed": 1, "cancelled": 2
    }  # fmt: skip
    assert cancelled["failCount"] == 3  # the seed's count: every item that did not succeed
    assert api("GET", f"/batch/status/{batch_id}").body["summary"] == cancelled["summary"]


def test_delete_only_terminal_batches(api, aws):
    grant("user-1", 10)
    batch_id = api(
        "POST",
        "/batch/create",
        {"type": "character", "requests": [{"prompt": "x", "imageBase64": png_base64()}]},
    ).body["id"]
    assert api("DELETE", f"/batch/{batch_id}").status == 409
    api("POST", f"/batch/{batch_id}/cancel")
    deleted = api("DELETE", f"/batch/{batch_id}")
    assert deleted.status == 204
    assert api("GET", f"/batch/status/{batch_id}").status == 404
    assert aws.s3_keys("inputs/") == []
    assert api("DELETE", f"/batch/{batch_id}").status == 404


def test_idempotency_key_replays_the_first_response_and_charges_once(api, aws):
    grant("user-1", 10)
    headers = {"Idempotency-Key": "order-42"}
    first = api("POST", "/batch/create", batch_body(2), headers=headers)
    second = api("POST", "/batch/create", batch_body(2), headers=headers)
    assert first.status == second.status == 202
    assert first.body == second.body
    assert second.headers["Location"] == first.headers["Location"]
    assert get_stores().credits.get_balance("user-1") == Decimal(6)
    assert len(aws.queue_messages("batchgen-submit")) == 1
    other = api("POST", "/batch/create", batch_body(3), headers=headers)
    assert other.status == 409
    assert get_stores().credits.get_balance("user-1") == Decimal(6)
    # The key is per user: another user's identical key is unrelated.
    grant("user-2", 10)
    assert (
        api("POST", "/batch/create", batch_body(2), headers=headers, token=make_token("user-2")).body["id"]
        != first.body["id"]
    )


def test_idempotency_key_is_not_burnt_by_a_failed_attempt(api, aws):
    headers = {"Idempotency-Key": "retry-me"}
    assert api("POST", "/batch/create", batch_body(1), headers=headers).status == 402
    grant("user-1", 2)
    assert api("POST", "/batch/create", batch_body(1), headers=headers).status == 202


def test_create_publishes_business_metrics(api, aws, capsys, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    grant("user-1", 10)
    capsys.readouterr()
    api("POST", "/batch/create", batch_body(3))
    emitted = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emitted, "no EMF metrics on stdout"
    import json

    document = json.loads(emitted[-1])
    assert document["BatchesCreated"] == [1.0] and document["RequestsAccepted"] == [3.0]
    assert document["CreditsCharged"] == [6.0]


def test_a_group_of_texts_succeeds_in_one_transaction_and_a_duplicate_counts_only_the_open_ones(api, aws):
    """Collect marks a group of ten texts in one transaction (10,000 texts: 1,000 transactions); an
    item already settled (a duplicate delivery) makes the group fall back to one item at a time."""
    from unittest import mock

    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": f"p{i}"} for i in range(5)]}).body[
        "id"
    ]
    repository, services = get_stores(), live_services()
    texts = [ItemSuccess(0, text="a"), ItemSuccess(1, text="b"), ItemSuccess(2, text="c")]
    db = repository.table.db
    with mock.patch.object(db, "transact_write_items", wraps=db.transact_write_items) as calls:
        assert settle.record_successes(services, batch_id, texts) == 3
    assert calls.call_count == 1
    again = [ItemSuccess(2, text="again"), ItemSuccess(3, text="d")]
    assert settle.record_successes(services, batch_id, again) == 1  # 2 was settled already
    record = stored(batch_id)
    assert record is not None and record.batch.successCount == 4
    assert [item.text for item in record.items] == ["a", "b", "c", "d", None]
    item_events = [e for e in repository.outbox.pending_events(100) if e.itemEvent]
    assert sorted(index for event in item_events for index in event.itemIndexes) == [0, 1, 2, 3]
