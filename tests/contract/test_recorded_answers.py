"""Real Gemini answers (../shared/gemini-samples, sources in its SOURCES.md and in
tests/contract/fixtures/README.md) through the service's own reading of them: what each means for an item,
an error, a match, a bill."""

from __future__ import annotations

import base64

from batchgen.adapters.gemini import _view, iter_results
from batchgen.domain.gemini_jobs import JobView
from batchgen.domain.gemini_requests import read_answer
from batchgen.models.records import ItemRecord
from batchgen.usecases.collect import match_answers
from tests.gemini_samples import sample


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
