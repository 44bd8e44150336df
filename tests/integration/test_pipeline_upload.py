"""upload: staged images -> Cloudinary -> item success -> batch finalisation."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import requests

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from tests.conftest import grant

SUBMIT, COLLECT, UPLOAD = constants.SUBMIT_QUEUE, constants.COLLECT_QUEUE, constants.UPLOAD_QUEUE


def patch_finalize(monkeypatch, wrapper) -> None:
    """Wraps the store's finalising write (the `finalize` move of a batch): `wrapper(real, *args)`."""
    from batchgen.adapters.dynamo.batches import DynamoBatches

    real = DynamoBatches.change_batch

    def change_batch(self, batch_id, change, events=()):
        if change.name != "finalize":
            return real(self, batch_id, change, events)
        return wrapper(real, self, batch_id, change, events)

    monkeypatch.setattr(DynamoBatches, "change_batch", change_batch)


def create(api, prompts, batch_type="character"):
    response = api("POST", "/batch/create", {"type": batch_type, "requests": [{"prompt": p} for p in prompts]})
    assert response.status == 202, response.body
    return response.body["id"]


def to_upload_queue(queues, poll):
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)


def status(api, batch_id):
    return api("GET", f"/batch/status/{batch_id}").body


def test_images_reach_cloudinary_with_deterministic_ids_and_the_batch_completes(
    api, gemini, cloudinary, queues, poll, aws
):
    grant("user-1", 10)
    batch_id = create(api, ["a cat", "a dog"])
    to_upload_queue(queues, poll)
    queues.drain(UPLOAD)
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["isComplete"] and body["completedAt"]
    assert body["successCount"] == 2 and body["failCount"] == 0 and body["refundedCredits"] == 0
    generation_ids = [item["generationId"] for item in body["items"]]
    assert sorted(cloudinary.assets) == sorted(f"batchgen/user-1/{batch_id}/{g}" for g in generation_ids)
    asset = cloudinary.assets[f"batchgen/user-1/{batch_id}/{generation_ids[0]}"]
    assert set(asset.tags) == {batch_id, "batch-character"}
    for url in body["results"]:
        served = requests.get(url, timeout=5)
        assert served.status_code == 200 and served.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert aws.s3_keys("staging/") == []  # staged copies are removed once uploaded


def test_duplicate_upload_delivery_keeps_one_asset_and_counters(api, gemini, cloudinary, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    to_upload_queue(queues, poll)
    messages = queues.receive(UPLOAD)
    queues.deliver(UPLOAD, messages)
    queues.deliver(UPLOAD, messages)
    body = status(api, batch_id)
    assert body["successCount"] == 2 and body["status"] == "completed"
    assert len(cloudinary.assets) == 2
    assert all(asset.uploads == 1 for asset in cloudinary.assets.values())


def test_cloudinary_500_is_retried_then_succeeds(api, gemini, cloudinary, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    to_upload_queue(queues, poll)
    cloudinary.inject_fault(status=500, count=1, operation="upload")
    messages = queues.receive(UPLOAD)
    assert queues.deliver(UPLOAD, messages)["batchItemFailures"]
    assert status(api, batch_id)["status"] == "processing"
    queues.deliver(UPLOAD, messages)
    assert status(api, batch_id)["status"] == "completed"


def test_upload_that_keeps_failing_fails_the_item_on_the_last_attempt_and_refunds_once(
    api, gemini, cloudinary, queues, poll
):
    grant("user-1", 10)
    batch_id = create(api, ["ok", "unlucky"])
    to_upload_queue(queues, poll)
    messages = sorted(queues.receive(UPLOAD), key=lambda m: m["Body"])
    queues.deliver(UPLOAD, [m for m in messages if '"index":0' in m["Body"]])
    unlucky = [m for m in messages if '"index":1' in m["Body"]]
    cloudinary.inject_fault(status=503, count=100, operation="upload")
    for attempt in range(1, UPLOAD.max_receive_count + 1):
        unlucky[0].setdefault("Attributes", {})["ApproximateReceiveCount"] = str(attempt)
        result = queues.deliver(UPLOAD, unlucky)
        assert bool(result["batchItemFailures"]) is (attempt < UPLOAD.max_receive_count)
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["successCount"] == 1 and body["failCount"] == 1
    assert body["refundedCredits"] == 2
    assert "Upload failed after retries" in body["items"][1]["error"]
    queues.deliver(UPLOAD, unlucky)  # yet another delivery changes nothing
    assert get_stores().credits.get_balance("user-1") == Decimal(8)


def test_permanent_cloudinary_refusal_fails_the_item_at_once(api, gemini, cloudinary, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    to_upload_queue(queues, poll)
    cloudinary.inject_fault(status=401, count=1, operation="upload")
    assert not queues.deliver(UPLOAD, queues.receive(UPLOAD))["batchItemFailures"]
    body = status(api, batch_id)
    assert body["status"] == "failed" and body["refundedCredits"] == 2
    assert get_stores().credits.get_balance("user-1") == Decimal(10)


def test_two_final_uploads_racing_finalise_once(api, gemini, cloudinary, queues, poll, monkeypatch):
    """Two Lambda containers finish the last two items at the same moment."""
    from batchgen.handlers.services import live_services
    from batchgen.usecases.pipeline.upload import upload_item

    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    to_upload_queue(queues, poll)
    wins: list[object] = []

    def counting_finalize(real, *args):
        result = real(*args)
        if result is not None:
            wins.append(result)
        return result

    patch_finalize(monkeypatch, counting_finalize)
    cloudinary.set_latency(0.2, operation="upload")
    messages = queues.bodies(UPLOAD.name)
    assert len(messages) == 2
    threads = [
        threading.Thread(
            target=upload_item,
            args=(live_services(), batch_id, m["index"], m["stagingKey"]),
            kwargs={"user_id": m["userId"], "batch_type": m["batchType"], "final_attempt": False},
        )
        for m in messages
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["successCount"] == 2


def test_one_sqs_batch_uploads_concurrently(api, gemini, cloudinary, queues, poll, monkeypatch):
    from batchgen.adapters import images_cdn

    grant("user-1", 20)
    batch_id = create(api, [f"image {i}" for i in range(6)])
    to_upload_queue(queues, poll)
    in_flight, peak, lock = [0], [0], threading.Lock()
    real_upload = images_cdn.upload_image

    def tracked_upload(*args, **kwargs):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            return real_upload(*args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(images_cdn, "upload_image", tracked_upload)
    cloudinary.set_latency(0.3, operation="upload")
    messages = queues.receive(UPLOAD)
    assert len(messages) == 6
    assert queues.deliver(UPLOAD, messages) == {"batchItemFailures": []}
    assert status(api, batch_id)["status"] == "completed"
    assert peak[0] >= 2  # the records of one SQS batch overlap


def test_cancel_while_uploading_skips_and_removes_the_upload(api, gemini, cloudinary, queues, poll, monkeypatch):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    to_upload_queue(queues, poll)
    # Cloudinary holds the first upload that reaches it until the cancel has been answered: the cancel
    # lands while that upload is in flight, however slow the machine (no sleep racing a latency).
    arrived, cancel_answered = threading.Event(), threading.Event()
    store_upload = cloudinary._upload

    def held_upload(request):
        arrived.set()
        assert cancel_answered.wait(30), "the cancel was never answered"
        return store_upload(request)

    monkeypatch.setattr(cloudinary, "_upload", held_upload)
    messages = queues.receive(UPLOAD)
    worker = threading.Thread(target=queues.deliver, args=(UPLOAD, messages))
    worker.start()
    try:
        assert arrived.wait(30), "no upload reached Cloudinary"
        cancelled = api("POST", f"/batch/{batch_id}/cancel")
    finally:
        cancel_answered.set()
        worker.join()
    assert cancelled.status == 200
    # the held upload (and any after it) was stored after the cancel; each one stored is destroyed
    assert cloudinary.calls["upload"] >= 1 and cloudinary.calls["destroy"] == cloudinary.calls["upload"]
    body = status(api, batch_id)
    assert body["status"] == "cancelled" and body["successCount"] == 0 and body["refundedCredits"] == 4
    assert cloudinary.assets == {}  # what landed during the cancel was destroyed
    queues.deliver(UPLOAD, messages)  # late duplicates are skipped
    assert cloudinary.assets == {}


def test_delete_with_purge_removes_the_cloudinary_images(api, gemini, cloudinary, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    to_upload_queue(queues, poll)
    queues.drain(UPLOAD)
    assert len(cloudinary.assets) == 2
    deleted = api("DELETE", f"/batch/{batch_id}", query="purgeImages=true")
    assert deleted.status == 202  # the record is gone; the images go when the upload function runs
    assert deleted.body["purgeStatus"] == "queued" and deleted.body["purgeImageCount"] == 2
    assert len(cloudinary.assets) == 2
    assert api("GET", f"/batch/status/{batch_id}").status == 404
    queues.drain(UPLOAD)
    queues.drain(SUBMIT)
    assert cloudinary.assets == {}


def test_mixed_batch_end_to_end_in_process(api, gemini, cloudinary, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["plain", "x [[fail]]", "y [[blocked]]"])
    to_upload_queue(queues, poll)
    queues.drain(UPLOAD)
    body = status(api, batch_id)
    assert body["status"] == "completed"
    assert len(body["results"]) == 1 and body["results"][0].startswith(cloudinary.base_url)
    assert [e.split(":")[0] for e in body["errors"]] == ["Request request-2", "Request request-3"]
    assert body["successCount"] == 1 and body["failCount"] == 2 and body["refundedCredits"] == 4
    assert get_stores().credits.get_balance("user-1") == Decimal(8)  # 10 - 6 charged + 4 refunded


@pytest.mark.parametrize("prompts", [["only [[fail]]"], ["a [[blocked]]", "b [[fail]]"]])
def test_batch_where_nothing_succeeds_ends_failed_with_full_refund(api, gemini, cloudinary, queues, poll, prompts):
    grant("user-1", 10)
    batch_id = create(api, prompts)
    to_upload_queue(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "failed" and body["refundedCredits"] == 2 * len(prompts)
    assert get_stores().credits.get_balance("user-1") == Decimal(10)


def test_duplicate_deliveries_uploading_at_once_keep_the_image(api, gemini, cloudinary, queues, poll):
    """Both copies upload (same public id); the one that loses the success write must not destroy it."""
    from batchgen.handlers.services import live_services
    from batchgen.usecases.pipeline.upload import upload_item

    grant("user-1", 10)
    batch_id = create(api, ["a"])
    to_upload_queue(queues, poll)
    (message,) = queues.bodies(UPLOAD.name)
    cloudinary.set_latency(0.2, operation="upload")
    kwargs = {"user_id": message["userId"], "batch_type": message["batchType"], "final_attempt": False}
    threads = [
        threading.Thread(
            target=upload_item, args=(live_services(), batch_id, message["index"], message["stagingKey"]), kwargs=kwargs
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["successCount"] == 1
    assert len(cloudinary.assets) == 1
    assert requests.get(body["results"][0], timeout=5).status_code == 200


def test_a_lost_finalisation_is_completed_by_the_next_delivery_or_tick(
    api, gemini, cloudinary, queues, poll, monkeypatch
):
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    to_upload_queue(queues, poll)
    failures = {"left": 1}

    def crash_once(real, *args):
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("the function died right after the item's success write")
        return real(*args)

    patch_finalize(monkeypatch, crash_once)
    messages = queues.receive(UPLOAD)
    assert queues.deliver(UPLOAD, messages)["batchItemFailures"]
    assert status(api, batch_id)["status"] == "processing"
    queues.deliver(UPLOAD, messages)  # the redelivery finds the item done and finishes the batch
    assert status(api, batch_id)["status"] == "completed"


def test_the_poller_finalises_a_batch_whose_items_are_all_settled(api, gemini, cloudinary, queues, poll, monkeypatch):
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    to_upload_queue(queues, poll)
    patch_finalize(monkeypatch, lambda real, *args: None)  # every finaliser lost
    queues.drain(UPLOAD)
    assert status(api, batch_id)["status"] == "processing"
    monkeypatch.undo()
    assert poll()["ended"] == 1
    assert status(api, batch_id)["status"] == "completed"


def test_concurrent_uploads_reuse_their_connections(api, gemini, cloudinary, queues, poll, caplog):
    # Given ten images uploaded by one SQS batch, in parallel threads, each upload taking a while
    grant("user-1", 40)
    batch_id = create(api, [f"image {i}" for i in range(10)])
    to_upload_queue(queues, poll)
    cloudinary.set_latency(0.2, "upload")
    # When the upload function runs them
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
        queues.deliver(UPLOAD, queues.receive(UPLOAD))
        queues.drain(UPLOAD)
    # Then no connection is thrown away for want of room in the SDK's pool
    assert status(api, batch_id)["successCount"] == 10
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []


def test_deleting_a_230_image_batch_pages_its_rows_and_purges_in_messages_of_at_most_a_page(api, cloudinary, queues):
    """At bulk scale: no read of the whole batch, no purge message over a page, no item row left behind."""
    from batchgen.config import get_catalog
    from batchgen.domain import pricing
    from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
    from batchgen.domain.states import BatchStatus, ItemStatus
    from local.emulators.cloudinary import StoredAsset

    count = 230
    catalog = get_catalog()
    draft = BatchDraft(batch_type="text", requests=[RequestDraft(None, f"p{i}", None) for i in range(count)])
    created = new_records(
        Principal("user-1"),
        draft,
        pricing.resolve_model(catalog, "text", None),
        [None] * count,
        pricing.quote(catalog, "text", None, count),
    )
    batch_id = created.batch.batchId
    repository = get_stores()
    repository.batches.put_batch(created.batch.model_copy(update={"status": BatchStatus.COMPLETED}))
    repository.items.put_items(
        [
            item.model_copy(update={"status": ItemStatus.SUCCESS, "publicId": f"batchgen/{batch_id}/{item.index}"})
            for item in created.items
        ]
    )
    stored = StoredAsset(**dict.fromkeys(StoredAsset.__dataclass_fields__, ""))  # type: ignore[arg-type]
    for item in created.items:
        cloudinary.assets[f"batchgen/{batch_id}/{item.index}"] = stored

    deleted = api("DELETE", f"/batch/{batch_id}", query="purgeImages=true")
    assert deleted.status == 202 and deleted.body["purgeImageCount"] == count
    assert api("GET", f"/batch/status/{batch_id}").status == 404
    assert sum(1 for _ in repository.items.iter_item_pages(batch_id)) == 0  # no item row left behind
    purges = [body for body in queues.bodies(constants.UPLOAD_QUEUE.name) if body["action"] == "purge"]
    assert sorted(len(body["publicIds"]) for body in purges) == [30, 100, 100]
    queues.drain(constants.UPLOAD_QUEUE)
    assert not any(key.startswith(f"batchgen/{batch_id}/") for key in cloudinary.assets)


def test_a_cancel_past_the_api_budget_answers_202_and_the_submit_function_finishes_it(api, gemini, queues, monkeypatch):
    """A cancel never depends on one API call (29 s); the rest goes on through the submit queue."""
    from batchgen.usecases.pipeline import settle

    monkeypatch.setattr(settle, "SETTLE_CHUNK_ITEMS", 5)  # 20 items: four pages
    monkeypatch.setattr(constants, "CANCEL_BUDGET_SECONDS", 0.0)  # the API call settles one page
    grant("user-1", 100)
    batch_id = create(api, [f"p{i}" for i in range(20)])
    queues.drain(SUBMIT)  # at Gemini: processing
    cancelled = api("POST", f"/batch/{batch_id}/cancel")
    assert cancelled.status == 202 and cancelled.body["status"] == "processing"
    summary = cancelled.body["summary"]
    assert (summary["cancelled"], summary["failed"]) == (5, 0)  # one page cancelled and refunded so far
    assert get_stores().credits.get_balance("user-1") == Decimal(100 - 40 + 10)  # 2 credits an item
    queues.drain(SUBMIT)  # FinishCancel (within the submit function's budget), then the Gemini job's cancel
    body = status(api, batch_id)
    assert body["status"] == "cancelled" and body["refundedCredits"] == 40 and body["failCount"] == 20
    assert (body["summary"]["cancelled"], body["summary"]["failed"]) == (20, 0)
    assert get_stores().credits.get_balance("user-1") == Decimal(100)
    assert gemini.calls["cancel"] == 1  # the job stopped once
    assert api("POST", f"/batch/{batch_id}/cancel").status == 409
