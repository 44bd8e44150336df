"""Real Gemini answers (../shared/gemini-samples, sources in its SOURCES.md and in
tests/contract/fixtures/README.md) through the service's own reading of them: what each means for an item,
an error, a match, a bill."""

from __future__ import annotations

import base64

from batchgen.domain.gemini_requests import read_answer
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
