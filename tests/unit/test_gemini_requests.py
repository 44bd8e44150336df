"""Reading Gemini's answers and building its requests."""

import base64

from batchgen.domain.gemini_requests import MAX_TEXT_BYTES, read_answer
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
