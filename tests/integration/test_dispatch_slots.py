"""The dispatcher against moto and the Gemini emulator: the cap is never overshot by
concurrent submits, premium first, and one busy user does not starve another."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import reset_caches
from batchgen.domain import ids
from batchgen.handlers.services import live_services
from batchgen.usecases.pipeline import dispatch, submit
from tests.conftest import grant, make_token

SUBMIT = constants.SUBMIT_QUEUE


@pytest.fixture
def capped(gemini, monkeypatch):
    monkeypatch.setenv("GEMINI_MAX_ACTIVE_JOBS", "2")
    monkeypatch.setattr(dispatch, "SLOT_GRACE_SECONDS", 0)
    reset_caches()
    gemini.delay_seconds = 3600  # jobs keep running until the test ends them
    yield gemini
    reset_caches()


def create(api, user: str = "user-1", tier: str | None = None) -> str:
    claims = {"tier": tier} if tier else {}
    token = make_token(user, **claims)
    answer = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "hi"}]}, token=token)
    assert answer.status == 202, answer.body
    return answer.body["id"]


def age(batch_id: str, seconds: float) -> None:
    get_stores().batches.update_batch(batch_id, {"createdAt": ids.iso(ids.utc_now() - timedelta(seconds=seconds))})


def end_jobs(gemini, batch_ids: list[str]) -> None:
    """Their jobs finish at Gemini and the batches end (cancelled here: the quickest end)."""
    for batch_id in batch_ids:
        assert live_services().batches.get_batch(batch_id) is not None
    for batch_id in batch_ids:
        job = get_stores().jobs.get_job(batch_id, 0).geminiJobName
        live_services().gemini.cancel_job(job)


def test_twenty_concurrent_submits_never_exceed_the_cap(api, capped, aws):
    grant("user-1", 100)
    batch_ids = [create(api) for _ in range(20)]
    aws.queue_messages(SUBMIT.name)  # the create messages: delivered by hand below, all at once
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def one(batch_id: str) -> None:
        barrier.wait()
        outcomes.append(submit.submit_batch(live_services(), batch_id).status)

    threads = [threading.Thread(target=one, args=(batch_id,)) for batch_id in batch_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capped.running_job_count == 2 and len(capped.jobs) == 2
    assert sorted(outcomes).count("submitted") == 2 and outcomes.count("waiting") == 18
    assert dispatch.active_job_count(live_services()) == 2


def test_a_premium_batch_created_after_three_standard_ones_runs_first(api, capped, queues, poll, aws):
    for user in ("user-1", "user-2"):
        grant(user, 10)
    standard = [create(api) for _ in range(3)]
    for seconds, batch_id in zip((30, 20, 10), standard, strict=True):
        age(batch_id, seconds)
    queues.drain(SUBMIT)
    running = [b for b in standard if get_stores().jobs.get_job(b, 0).geminiJobName]
    assert running == standard[:2] and capped.running_job_count == 2
    premium = create(api, "user-2", tier="premium")
    queues.drain(SUBMIT)
    poll()  # the dispatcher's pass writes each waiting batch's place; a status reads it
    status = api("GET", f"/batch/status/{premium}", token=make_token("user-2")).body
    assert status["status"] == "pending" and status["queuePosition"] == 1
    assert api("GET", f"/batch/status/{standard[2]}").body["queuePosition"] == 2
    # One running job ends: its slot goes to the premium batch, not to the older standard one.
    end_jobs(capped, standard[:1])
    api("POST", f"/batch/{standard[0]}/cancel")
    tick = poll()
    assert tick["slots_released"] == 1 and tick["admitted"] == 1
    queues.drain(SUBMIT)
    assert get_stores().jobs.get_job(premium, 0).geminiJobName
    assert not get_stores().jobs.get_job(standard[2], 0).geminiJobName
    assert capped.running_job_count == 2


def test_one_user_with_thirty_batches_does_not_starve_another(api, capped, queues, poll, monkeypatch, aws):
    monkeypatch.setenv("GEMINI_MAX_ACTIVE_JOBS_PER_USER", "1")
    reset_caches()
    grant("user-1", 100)
    grant("user-2", 10)
    heavy = [create(api) for _ in range(30)]
    for index, batch_id in enumerate(heavy):
        age(batch_id, 300 - index)
    light = create(api, "user-2")
    while queues.drain(SUBMIT):  # 31 messages: until none is left
        pass
    holders = sorted(slot.userId for slot in get_stores().slots.list_slots())
    assert holders == ["user-1", "user-2"] and capped.running_job_count == 2
    assert get_stores().jobs.get_job(light, 0).geminiJobName
