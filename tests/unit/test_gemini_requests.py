"""Reading Gemini's answers and building its requests."""

import base64

import pytest
from google.genai import types

from batchgen.domain.gemini_requests import MAX_TEXT_BYTES, error_answer, read_answer
from tests.helpers import png_bytes


def response(*parts, finish="STOP"):
    return {"response": {"candidates": [{"content": {"parts": list(parts)}, "finishReason": finish}]}}


def test_image_answer():
    answer = read_answer(
        response(
            {"text": "here"}, {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png_bytes()).decode()}}
        ),
        True,
    )
    assert answer.image == png_bytes() and answer.mime_type == "image/png" and answer.error is None


def test_errors_blocks_and_missing_images_are_readable():
    assert read_answer({"error": {"code": 500, "message": "boom"}}, True).error == "Gemini error 500: boom"
    assert "SAFETY" in read_answer({"response": {"candidates": [{"finishReason": "SAFETY"}]}}, True).error
    assert "PROHIBITED" in read_answer({"response": {"promptFeedback": {"blockReason": "PROHIBITED"}}}, False).error
    assert "no image" in read_answer(response({"text": "only words"}), True).error
    assert read_answer({"response": {}}, False).error == "Gemini returned no candidates"


def test_long_texts_are_capped_in_bytes_not_characters():
    answer = read_answer(response({"text": "🙂" * MAX_TEXT_BYTES}), False)
    assert len(answer.text.encode("utf-8")) <= MAX_TEXT_BYTES
    assert set(answer.text) == {"🙂"}  # cut on a character boundary


# --- fidelity to the real API ------------------------------------------------------------
def image_part(data: bytes, thought: bool = False) -> dict:
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
    return {**part, "thought": True} if thought else part


def test_thought_images_are_skipped_and_the_last_final_image_is_taken():
    answer = read_answer(
        response(image_part(b"draft-1", True), image_part(b"draft-2", True), {"text": "done"}, image_part(b"final")),
        True,
    )
    assert answer.image == b"final"  # before: the first image, a draft


@pytest.mark.parametrize(
    ("finish", "words"),
    [
        ("IMAGE_SAFETY", "safety filter blocked the image; describe a different subject or scene"),
        ("IMAGE_PROHIBITED_CONTENT", "refused the image as prohibited content; it cannot be generated"),
        ("IMAGE_RECITATION", "would have reproduced a protected image"),
        ("IMAGE_OTHER", "could not produce an image for this prompt; rephrase it"),
        ("NO_IMAGE", "safety filter blocked the image; describe a different subject or scene and try again (NO_IMAGE)"),
        ("SPII", "sensitive personal information; remove it and try again (SPII)"),
        ("LANGUAGE", "does not support the language of the prompt"),
        ("MAX_TOKENS", "cut off at the output length limit"),
        ("MALFORMED_RESPONSE", "malformed answer; try the request again (MALFORMED_RESPONSE)"),
        ("OTHER", "did not name; try again or rephrase the prompt (OTHER)"),
    ],
)
def test_finish_reasons_read_as_what_happened_never_no_image(finish, words):
    error = read_answer({"response": {"candidates": [{"finishReason": finish, "index": 0}]}}, True).error
    assert words in error


def test_a_prompt_block_and_a_text_only_refusal_are_readable():
    blocked = read_answer({"response": {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}}, True).error
    assert blocked == (
        "Gemini refused this request as prohibited content; it cannot be generated"
        " (PROHIBITED_CONTENT) (prompt blocked)"
    )
    refusal = read_answer(response({"text": "I can't draw real people."}), True).error
    assert "declined" in refusal and "I can't draw real people." in refusal


@pytest.mark.parametrize(
    ("code", "transient"), [(13, True), (14, True), (4, True), (8, True), (3, False), (500, False)]
)
def test_grpc_codes_13_14_4_8_are_transient(code, transient):
    assert error_answer({"code": code, "message": "m"}).transient is transient


def test_an_sdk_inline_response_gives_its_bytes_not_a_json_dump():
    png = png_bytes() + b"\xfb\xff\xfe" * 50  # bytes whose base64 has '+' and '/', so URL-safe differs
    sdk = types.InlinedResponse(
        response=types.GenerateContentResponse(
            candidates=[
                types.Candidate(
                    content=types.Content(
                        role="model",
                        parts=[
                            types.Part(inline_data=types.Blob(mime_type="image/png", data=b"draft"), thought=True),
                            types.Part(inline_data=types.Blob(mime_type="image/png", data=png)),
                        ],
                    ),
                    finish_reason=types.FinishReason.STOP,
                )
            ]
        ),
        metadata={"key": "gen_1"},
    )
    answer = read_answer(sdk, True)
    assert answer.image == png and answer.mime_type == "image/png"


def test_inline_responses_are_matched_by_key_never_by_position():
    from batchgen.adapters.gemini import JobView, iter_results
    from batchgen.domain.states import BatchStatus
    from batchgen.models.records import BatchRecord, ItemRecord
    from batchgen.usecases.pipeline.collect import match_answers

    def text(value: str, key: str | None) -> types.InlinedResponse:
        part = types.Part(text=value)
        body = types.GenerateContentResponse(candidates=[types.Candidate(content=types.Content(parts=[part]))])
        return types.InlinedResponse(response=body, metadata={"key": key} if key else None)

    batch = BatchRecord(
        batchId="b",
        userId="u",
        type="text",
        status=BatchStatus.PROCESSING,
        model="m",
        createdAt="x",
        updatedAt="x",
        requestCount=2,
        unitPrice=1,
        creditCost=2,
    )
    items = [ItemRecord(batchId="b", itemId=f"gen_{i}", index=i, clientId=str(i)) for i in range(2)]

    def answers(responses):
        job = JobView("batches/j", None, "JOB_STATE_SUCCEEDED", None, responses)
        read = ((key, read_answer(result, batch.type != "text")) for key, result in iter_results(job))
        return [(item.itemId if item else "", answer.text) for item, answer in match_answers(read, items)]

    # Out of order with keys: each goes to its own item.
    assert answers([text("second", "gen_1"), text("first", "gen_0")]) == [("gen_1", "second"), ("gen_0", "first")]
    # No keys at all, even with the counts matching: never by position (Gemini may have reordered them).
    assert answers([text("first", None), text("second", None)]) == [("", "first"), ("", "second")]
    # Some keys dropped: a keyless response is never guessed onto an item by its position.
    assert answers([text("second", "gen_1"), text("first", None)]) == [("gen_1", "second"), ("", "first")]
    # Counts differ: no positional guessing either.
    assert answers([text("only", None)]) == [("", "only")]


def test_gemini_base_url_is_honoured_with_a_real_key_too(monkeypatch):
    from batchgen.adapters import gemini
    from batchgen.config import reset_caches

    monkeypatch.setenv("GEMINI_API_KEY", "AIza-real-looking-key")
    monkeypatch.setenv("GEMINI_BASE_URL", "https://gemini-proxy.example.com")
    reset_caches()
    gemini.reset_client()
    try:
        client = gemini._client()
        assert client._api_client._http_options.base_url.startswith("https://gemini-proxy.example.com")
        assert client._api_client.api_key == "AIza-real-looking-key"
    finally:
        gemini.reset_client()
        reset_caches()


def test_one_builder_makes_the_batch_line_the_inline_request_and_the_generate_content_call():
    from batchgen.config import load_catalog
    from batchgen.domain import photo
    from batchgen.domain.gemini_requests import inline_request, jsonl_line
    from batchgen.domain.states import BatchStatus
    from batchgen.models.records import BatchRecord, ItemRecord

    catalog = load_catalog("")
    batch = BatchRecord(
        batchId="b",
        userId="u",
        type="text-to-image",
        status=BatchStatus.PENDING,
        model="gemini-3-pro-image",
        quality="4k",
        aspectRatio="16:9",
        createdAt="x",
        updatedAt="x",
        requestCount=1,
        unitPrice=1,
        creditCost=1,
    )
    item = ItemRecord(batchId="b", itemId="gen_1", index=0, clientId="c", prompt="a lighthouse")
    plan = photo.plan(
        photo.PhotoDraft(
            model="gemini-3-pro-image", prompt="a lighthouse", mode="t2i", quality="4k", aspect_ratio="16:9"
        ),
        catalog,
    )
    contents, config = photo.request(plan, catalog)
    line = jsonl_line(batch, item, None, catalog)["request"]
    inline = inline_request(batch, item, None, catalog)
    expected = {"response_modalities": ["TEXT", "IMAGE"], "image_config": {"aspect_ratio": "16:9", "image_size": "4K"}}
    assert config == line["generation_config"] == inline["config"] == expected
    assert contents == line["contents"] == inline["contents"] == [{"role": "user", "parts": [{"text": "a lighthouse"}]}]
