"""Scheduling and the standard endpoint over HTTP against the local runtime: a scheduled batch waits,
then runs; the standard endpoint answers seed 003's Variant 1 client through the front door with its
session cookie; quote and templates."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.e2e.flows import balance, wait_until_complete
from tests.helpers import png_data_url


def test_a_batch_scheduled_two_seconds_ahead_waits_then_runs(runtime):
    _, token = runtime.new_user(10)
    when = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    body = {"type": "text", "requests": [{"prompt": "hello later"}], "scheduleAt": when}
    created = runtime.request("POST", "/batch/create", token=token, json=body)
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    status = runtime.request("GET", f"/batch/status/{batch_id}", token=token).json()
    assert status["status"] == "scheduled" and status["scheduledFor"] == when
    assert balance(runtime, token) == Decimal("9.5")  # charged at once
    time.sleep(1)
    assert runtime.request("GET", f"/batch/status/{batch_id}", token=token).json()["status"] == "scheduled"
    report = wait_until_complete(runtime, token, batch_id)
    assert report["status"] == "completed", report
    assert report["updatedAt"] >= when


def test_seed_003_variant_1_generates_one_photo_through_its_session_cookie(runtime):
    # The seed's client code: fetch('/api/generate/photo', {method: 'POST', headers: {'Content-Type':
    # 'application/json'}, body: JSON.stringify({model, prompt, mode: 'i2i', referenceImage, quality,
    # aspectRatio})}) with the browser's session cookie, one request per image.
    _, token = runtime.new_user(10)
    body = {
        "model": "gemini-3.1-flash-image",
        "prompt": "Turn this into a pencil sketch",
        "mode": "i2i",
        "referenceImage": png_data_url(),
        "quality": "1k",
        "aspectRatio": "1:1",
    }
    answer = runtime.request("POST", "/api/generate/photo", headers={"Cookie": f"session={token}"}, json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["status"] == "success" and data["creditCost"] == 4
    image = runtime.session.get(data["imageUrl"], timeout=10)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert balance(runtime, token) == Decimal(6)
    failed = runtime.request(
        "POST", "/api/generate/photo", headers={"Cookie": f"session={token}"}, json={**body, "prompt": "x [[fail]]"}
    )
    assert failed.status_code == 502 and failed.json()["error"] == "Generation failed"
    assert balance(runtime, token) == Decimal(6)


def test_quote_and_template_over_http(runtime):
    _, token = runtime.new_user(3)
    template = {"name": "t", "type": "food", "prompt": "{{dish}} on a plate", "requests": [{"prompt": "top"}]}
    created = runtime.request("POST", "/batch/templates", token=token, json=template)
    assert created.status_code == 201, created.text
    quote = runtime.request(
        "POST", "/batch/quote", token=token, json={"templateId": created.json()["id"], "variables": {"dish": "soup"}}
    )
    assert quote.status_code == 200, quote.text
    answer = quote.json()
    prices = ("requestCount", "creditCost", "standardCost", "savings", "balance", "sufficient")
    assert {key: answer[key] for key in prices} == {
        "requestCount": 1,
        "creditCost": 2,
        "standardCost": 4,
        "savings": 2,
        "balance": 3,
        "sufficient": True,
    }
    assert [(entry["tier"], entry["available"]) for entry in answer["tiers"]] == [
        ("batch", True),
        ("flex", False),  # Flex does not serve the image model a food batch runs on
        ("auto", True),
    ]
