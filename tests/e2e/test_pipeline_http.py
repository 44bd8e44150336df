"""Batches created over HTTP run through submit, poll, collect and upload in `make run`'s runtime."""

from __future__ import annotations

import struct
import time
from decimal import Decimal

import pytest

from tests.e2e.flows import balance, wait_until_complete
from tests.helpers import png_data_url

pytestmark = pytest.mark.e2e


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_text_batch_completes_with_its_texts(runtime):
    _, token = runtime.new_user(5)
    created = runtime.request(
        "POST",
        "/batch/create",
        token=token,
        json={"type": "text", "requests": [{"prompt": "first question"}, {"prompt": "second question"}]},
    ).json()
    report = wait_until_complete(runtime, token, created["id"])
    assert report["status"] == "completed", report
    assert report["results"] == ["Emulated answer to: first question", "Emulated answer to: second question"]
    assert [item["text"] for item in report["items"]] == report["results"]
    assert balance(runtime, token) == Decimal(4)


def test_mixed_image_batch_ends_completed_with_urls_errors_and_exact_refunds(runtime):
    _, token = runtime.new_user(20)
    body = {
        "type": "product",
        "aspectRatio": "16:9",
        "requests": [
            {"id": "plain", "prompt": "a leather shoe"},
            {"id": "broken", "prompt": "a hat [[fail]]"},
            {"id": "unsafe", "prompt": "a bag [[blocked]]"},
            {"id": "edit", "prompt": "a watch", "imageBase64": png_data_url()},
        ],
    }
    created = runtime.request("POST", "/batch/create", token=token, json=body).json()
    assert created["creditCost"] == 10
    report = wait_until_complete(runtime, token, created["id"])
    assert report["status"] == "completed", report
    assert (report["successCount"], report["failCount"]) == (2, 2)
    assert [item["status"] for item in report["items"]] == ["success", "failed", "failed", "success"]
    assert report["errors"][0].startswith("Request broken: Gemini error 3 INVALID_ARGUMENT")
    assert report["errors"][1].startswith("Request unsafe: Gemini's safety filters blocked this request")
    assert Decimal(str(report["refundedCredits"])) == Decimal(5)
    assert balance(runtime, token) == Decimal(15)
    assert report["completedAt"] and report["summary"] == {
        "total": 4,
        "pending": 0,
        "processing": 0,
        "completed": 2,
        "failed": 2,
        "cancelled": 0,
    }
    assert len(report["results"]) == 2
    for url in report["results"]:
        image = runtime.session.get(url, timeout=10)
        assert image.status_code == 200
        width, height = png_size(image.content)
        assert width > height  # the aspect ratio reached Gemini


def test_job_failed_at_gemini_refunds_every_credit(runtime):
    _, token = runtime.new_user(10)
    created = runtime.request(
        "POST",
        "/batch/create",
        token=token,
        json={"type": "food", "requests": [{"prompt": "soup [[job:failed]]"}, {"prompt": "bread"}]},
    ).json()
    report = wait_until_complete(runtime, token, created["id"])
    assert report["status"] == "failed", report
    assert report["geminiState"] == "JOB_STATE_FAILED"
    assert Decimal(str(report["refundedCredits"])) == Decimal(4)
    assert balance(runtime, token) == Decimal(10)
    history = runtime.request("GET", "/batch/history", token=token).json()
    assert history[0]["status"] == "failed"


def test_seed_003_client_polls_until_complete(runtime):
    """GeneratorV2 from seed 003, unchanged: POST, then GET with jobIds every 2 s until isComplete."""
    _, token = runtime.new_user(10)
    created = runtime.request(
        "POST",
        "/api/generate/batch",
        token=token,
        json={
            "prompt": "Add white background",
            "model": "flux-2",
            "quality": "1k",
            "aspectRatio": "1:1",
            "images": [{"id": "img-1", "data": png_data_url()}, {"id": "img-2", "data": png_data_url()}],
        },
    ).json()
    job_ids = ",".join(job["generationId"] for job in created["jobs"])
    for _attempt in range(30):
        data = runtime.request(
            "GET",
            "/api/generate/batch",
            token=token,
            params={"batchId": created["batchId"], "jobIds": job_ids},
        ).json()
        if data["isComplete"]:
            break
        time.sleep(2)
    assert data["isComplete"], data
    assert data["summary"] == {"total": 2, "pending": 0, "completed": 2, "failed": 0}
    for result in data["results"]:
        assert result["status"] == "success" and result["error"] is None
        assert runtime.session.get(result["imageUrl"], timeout=10).content.startswith(b"\x89PNG")
