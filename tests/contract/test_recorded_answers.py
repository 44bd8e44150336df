"""Real Gemini answers (../shared/gemini-samples, sources in its SOURCES.md and in
tests/contract/fixtures/README.md) through the service's own reading of them: what each means for an item,
an error, a match, a bill."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest

from batchgen.adapters.gemini import _view, iter_results
from batchgen.config import load_catalog
from batchgen.domain.gemini_errors import Cause, Remedy, classify
from batchgen.domain.gemini_jobs import JobView
from batchgen.domain.gemini_requests import read_answer
from batchgen.domain.gemini_usage import GeminiUsage, priced, usage_of
from batchgen.models.records import ItemRecord
from batchgen.usecases.pipeline.collect import match_answers
from tests.gemini_samples import sample, sample_lines


# --- finish reasons and finishMessage -------------------------------------------------------------
def test_a_flash_image_safety_block_reads_as_filtered_not_as_a_wording_problem():
    # 3.1-flash-image with responseModalities ["IMAGE"]: `content: {}` and NO_IMAGE, nothing else.
    error = read_answer({"response": sample("generate_no_image_safety_flash_spike_2026-09-02.json")}, True).error
    assert error is not None and error.startswith("Gemini's safety filter blocked the image")
    assert error.endswith("(NO_IMAGE)") and "rephrase the prompt as an image request" not in error


def test_a_no_image_answer_without_content_reads_as_filtered_too():
    body = sample("generate_no_image_empty_prompt_spike_2026-09-02.json")
    assert "content" not in body["candidates"][0]
    assert read_answer({"response": body}, True).error.startswith("Gemini's safety filter blocked the image")


def test_the_finish_message_of_a_pro_image_safety_block_reaches_the_item():
    body = sample("generate_image_safety_pro_spike_2026-09-02.json")
    error = read_answer({"response": body}, True).error
    finish_message = body["candidates"][0]["finishMessage"]
    assert error.startswith("Gemini's safety filter blocked the image; describe a different subject")
    assert "(IMAGE_SAFETY). Gemini said: " + finish_message[:100] in error
    assert "You will not be charged for blocked images" in error


def test_a_text_refusal_with_stop_and_a_text_only_answer_show_the_models_words():
    refusal = sample("generate_text_refusal_stop_spike_2026-09-02.json")
    error = read_answer({"response": refusal}, True).error
    assert error.startswith("Gemini declined to draw this and returned no image; it said: I cannot fulfill")
    story = sample("generate_text_only_from_image_model_pydantic-ai.json")
    assert "shy axolotl named Pipkin" in read_answer({"response": story}, True).error


def test_a_pro_image_answer_with_an_empty_thought_signature_is_its_jpeg():
    body = sample("generate_image_jpeg_pro-preview_dmxapi.json")
    answer = read_answer({"response": body}, True)
    part = body["candidates"][0]["content"]["parts"][0]
    assert answer.error is None and answer.mime_type == "image/jpeg"
    assert answer.image == base64.b64decode(part["inlineData"]["data"])


# --- inline answers: by key, never by position ----------------------------------------------------
def _inline_job(body: dict) -> JobView:
    from google.genai import types
    from google.genai.batches import _BatchJob_from_mldev

    return _view(types.BatchJob._from_response(response=_BatchJob_from_mldev(body), kwargs={}))


def _items(count: int) -> list[ItemRecord]:
    return [ItemRecord(batchId="b", itemId=f"req_{i + 1}", index=i, clientId=f"c{i}") for i in range(count)]


def _matched(job: JobView, items: list[ItemRecord]) -> list[tuple[str | None, str]]:
    read = ((key, read_answer(result, wants_image=False)) for key, result in iter_results(job))
    return [(item.itemId if item else None, answer.text or "") for item, answer in match_answers(read, items)]


def test_recorded_inline_answers_go_to_the_items_their_keys_name_in_any_order():
    body = sample("op_succeeded_inline_cn-curl_2025-12-10.json")
    responses = body["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    body["metadata"]["output"]["inlinedResponses"]["inlinedResponses"] = responses[::-1]  # reordered (#1909)
    matched = _matched(_inline_job(body), _items(3))
    assert [key for key, _ in matched] == ["req_3", "req_2", "req_1"]
    assert [text[:4] for _, text in matched] == [
        r["response"]["candidates"][0]["content"]["parts"][0]["text"][:4] for r in responses[::-1]
    ]


def test_recorded_inline_answers_without_their_keys_are_never_matched_by_position():
    body = sample("op_succeeded_inline_cn-curl_2025-12-10.json")
    responses = body["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    # What python-genai #2008 / js-genai #1191 report (no metadata echoed) with #1909's reordering.
    keyless = [{"response": r["response"]} for r in responses[::-1]]
    body["metadata"]["output"]["inlinedResponses"]["inlinedResponses"] = keyless
    assert [item for item, _ in _matched(_inline_job(body), _items(3))] == [None, None, None]
    # A job of one request: its one answer can only be that request's.
    body["metadata"]["output"]["inlinedResponses"]["inlinedResponses"] = keyless[:1]
    assert [item for item, _ in _matched(_inline_job(body), _items(1))] == ["req_1"]


# --- errors: classified by what helps ---------------------------------------------------------------
FIXTURES = Path(__file__).with_name("fixtures")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_depleted_prepayment_credits_are_final_billing_not_a_rate_limit():
    body = sample("error_429_credits_depleted_spike_2026-09-02.json")
    failure = classify(429, body)
    assert (failure.remedy, failure.cause) == (Remedy.FINAL, Cause.BILLING) and failure.retry_after_seconds is None
    reason = failure.describe("batch create")
    assert reason.startswith("Gemini batch create failed (429 RESOURCE_EXHAUSTED): Your prepayment credits")
    assert "not about your account" in reason


def test_a_quota_the_tier_does_not_have_is_final_though_it_carries_retry_info():
    failure = classify(429, fixture("error_429_no_free_tier_quota_langchain-google-1445.json"))
    assert (failure.remedy, failure.cause) == (Remedy.FINAL, Cause.BILLING)


def test_a_rate_limit_is_retried_after_the_delay_its_retry_info_names():
    failure = classify(429, fixture("error_429_rate_limit_retry_info_langextract-50.json"))
    assert (failure.remedy, failure.cause, failure.retry_after_seconds) == (Remedy.RETRY, Cause.RATE_LIMIT, 15.0)
    plain = classify(429, fixture("error_429_resource_exhausted_generative-ai-docs-236.json"))
    assert (plain.remedy, plain.retry_after_seconds) == (Remedy.RETRY, None)
    assert classify(429, {"error": {"code": 429}}, retry_after_header="30").retry_after_seconds == 30.0


def test_an_unsupported_image_size_is_final_invalid_and_a_retired_model_is_not_found():
    invalid = classify(400, sample("error_400_image_size_spike_2026-09-02.json"))
    assert (invalid.remedy, invalid.cause) == (Remedy.FINAL, Cause.INVALID)
    assert "Image size 2K is not supported for this model" in invalid.describe("generate")
    assert classify(404, sample("error_404_retired_model_spike_2026-09-02.json")).remedy is Remedy.NOT_FOUND


@pytest.mark.parametrize(
    ("code", "body", "remedy", "cause"),
    [
        (403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "denied"}}, Remedy.FINAL, "permission"),
        (401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, Remedy.FINAL, "permission"),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "status": "INVALID_ARGUMENT",
                    "message": "API key not valid.",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
                }
            },
            Remedy.FINAL,
            "permission",
        ),
        (503, {"error": {"code": 503, "status": "UNAVAILABLE"}}, Remedy.RETRY, "unavailable"),
        (500, {"error": {"code": 500, "status": "INTERNAL"}}, Remedy.RECONCILE, "server"),
        (504, {"error": {"code": 504, "status": "DEADLINE_EXCEEDED"}}, Remedy.RECONCILE, "server"),
    ],
)
def test_permission_is_final_and_5xx_are_retried(code, body, remedy, cause):
    failure = classify(code, body)
    assert (failure.remedy, failure.cause.value) == (remedy, cause)


def test_the_adapter_raises_what_the_classification_says(monkeypatch):
    from google.genai import errors

    from batchgen.adapters import gemini
    from batchgen.domain.errors import OutcomeUnknown, PermanentError, TransientError

    def raising(code: int, body: dict):
        with gemini.translated_errors("batch create"):
            raise errors.APIError(code, body)

    with pytest.raises(PermanentError, match="prepayment credits are depleted"):
        raising(429, sample("error_429_credits_depleted_spike_2026-09-02.json"))
    with pytest.raises(TransientError) as limited:
        raising(429, fixture("error_429_rate_limit_retry_info_langextract-50.json"))
    assert limited.value.retry_after_seconds == 15.0 and not isinstance(limited.value, OutcomeUnknown)
    with pytest.raises(OutcomeUnknown):
        raising(500, {"error": {"code": 500, "status": "INTERNAL"}})


# --- what Gemini bills: usageMetadata -----------------------------------------------------------------
def test_a_pro_image_answers_usage_splits_image_text_and_thinking_and_prices_them():
    body = sample("generate_image_jpeg_pro-preview_dmxapi.json")
    usage = usage_of({"response": body}, delivered_image=True, size="1K")
    metadata = body["usageMetadata"]
    assert (usage.prompt_tokens, usage.image_tokens, usage.thoughts_tokens) == (32, 1120, 748)
    assert usage.output_tokens == metadata["candidatesTokenCount"] - 1120 == 652
    assert usage.images == {"1K": 1}
    catalog = load_catalog("")
    cost = priced(usage, catalog.models["gemini-3-pro-image"], catalog).cost_usd
    # ($2 x 32 + $12 x (652 + 748) + $120 x 1120) per 1M tokens, at the batch rate (half)
    assert (
        cost == Decimal(2 * 32 + 12 * 1400 + 120 * 1120) / 1_000_000 / 2 == Decimal("0.075632")
    )  # about the $0.134 / 2 Gemini lists per 1K pro image, plus thinking


def test_recorded_inline_text_answers_report_their_thinking_through_the_sdk_objects():
    job = _inline_job(sample("op_succeeded_inline_cn-curl_2025-12-10.json"))
    usages = [usage_of(result, delivered_image=False, size=None) for _, result in iter_results(job)]
    assert [u.thoughts_tokens for u in usages] == [1582, 2168, usages[2].thoughts_tokens]
    assert [u.prompt_tokens for u in usages] == [5, 4, 6] and usages[0].output_tokens == 1373
    total = sum(usages, GeminiUsage())
    assert total.answers == 3 and total.images == {}


def test_a_blocked_answer_and_a_file_line_report_what_they_carry():
    blocked = usage_of(
        {"response": sample("generate_image_safety_pro_spike_2026-09-02.json")}, delivered_image=False, size="1K"
    )
    assert (blocked.thoughts_tokens, blocked.image_tokens, blocked.images) == (220, 0, {})
    (line,) = sample_lines("line_text_lupa_2026-08-20.jsonl")
    text = usage_of(line, delivered_image=False, size=None)
    assert (text.prompt_tokens, text.output_tokens, text.thoughts_tokens) == (1427, 144, 0)
    assert GeminiUsage.from_record(text.as_record()) == text
