"""Gemini request bodies for a batch's items, and the reading of Gemini's per-item answers."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from batchgen.config import Catalog
from batchgen.domain import ids
from batchgen.domain.pricing import model_kind, model_qualities
from batchgen.models.records import BatchRecord, ItemRecord

MAX_TEXT_BYTES = 100_000  # UTF-8 bytes one stored item may hold (DynamoDB items stop at 400 KB)


def job_display_name(batch_id: str, round_number: int = 0, chunk: int = 0) -> str:
    """Deterministic per batch, chunk and round, so an interrupted submit can find the job it may have
    created (chunk 0, the only one of most batches, keeps the name it always had)."""
    return f"batchgen-{batch_id}" + (f"-c{chunk}" if chunk else "") + (f"-r{round_number}" if round_number else "")


_DISPLAY_NAME = re.compile(r"^batchgen-(?P<batch>.+?)(?:-c(?P<chunk>\d{1,5}))?(?:-r\d{1,3})?$")


def batch_and_chunk_of(display_name: str) -> tuple[str, int] | None:
    """The batch id and chunk a job's display name (`job_display_name`) names; None for another's job."""
    match = _DISPLAY_NAME.match(display_name)
    if match is None or not ids.is_batch_id(match["batch"]):
        return None
    return match["batch"], int(match["chunk"] or 0)


def webhook_config(url: str | None, batch_id: str, chunk: int) -> dict[str, Any] | None:
    """A job's `webhook_config` (per-job webhooks): Gemini announces the job's end to `url` instead of
    the project's registered webhooks, signed with an RS256 JWT. The metadata rides along for a reader
    of Gemini's logs; the route itself asks Gemini which job ended."""
    if not url:
        return None
    return {"uris": [url], "user_metadata": {"batch_id": batch_id, "chunk": chunk}}


def full_prompt(batch: BatchRecord, item: ItemRecord) -> str:
    parts = [part.strip() for part in (batch.sharedPrompt, item.prompt) if part and part.strip()]
    prompt = "\n\n".join(parts)
    if batch.negativePrompt and batch.negativePrompt.strip():
        prompt += f"\n\nAvoid: {batch.negativePrompt.strip()}"
    return prompt


@dataclass(frozen=True)
class GenerateRequest:
    """One request to a Gemini model, whatever carries it: a batch file line, an inline batch request or a
    synchronous generateContent call (the standard endpoint; Flex's calls too). Built once by `generate_request`;
    each carrier only writes it in its own shape."""

    prompt: str
    image: bytes | None
    mime_type: str | None
    config: dict[str, Any]  # GenerationConfig, snake_case as the SDK and the batch file parser take it

    def contents(self, *, base64_image: bool) -> list[dict[str, Any]]:
        """`contents` with the image as bytes (the SDK encodes it) or as base64 text (a JSONL line)."""
        parts: list[dict[str, Any]] = [{"text": self.prompt}]
        if self.image is not None:
            data: bytes | str = base64.b64encode(self.image).decode() if base64_image else self.image
            parts.append({"inline_data": {"mime_type": self.mime_type, "data": data}})
        return [{"role": "user", "parts": parts}]


def generate_request(
    catalog: Catalog,
    *,
    batch_type: str,
    model: str,
    prompt: str,
    image: bytes | None = None,
    mime_type: str | None = None,
    quality: str | None = None,
    aspect_ratio: str | None = None,
) -> GenerateRequest:
    """The one builder of a Gemini request: the prompt, an optional input image, and the generation config
    (text only for text batches; text and image with the aspect ratio and the image size of the quality,
    when the model delivers that size). snake_case, as every executed batch example writes it (the JSONL
    parser rejects camelCase)."""
    if model_kind(batch_type) == "text":
        config: dict[str, Any] = {"response_modalities": ["TEXT"]}
    else:
        image_config: dict[str, str] = {}
        if aspect_ratio:
            image_config["aspect_ratio"] = aspect_ratio
        if quality and quality in model_qualities(catalog, model):
            image_config["image_size"] = catalog.imageSizeByQuality[quality]
        config = {"response_modalities": ["TEXT", "IMAGE"]}
        if image_config:
            config["image_config"] = image_config
    return GenerateRequest(prompt, image, mime_type, config)


def item_request(batch: BatchRecord, item: ItemRecord, image: bytes | None, catalog: Catalog) -> GenerateRequest:
    return generate_request(
        catalog,
        batch_type=batch.type,
        model=batch.model,
        prompt=full_prompt(batch, item),
        image=image,
        mime_type=item.imageMimeType,
        quality=batch.quality,
        aspect_ratio=batch.aspectRatio,
    )


def generation_config(batch: BatchRecord, catalog: Catalog) -> dict[str, Any]:
    return generate_request(
        catalog,
        batch_type=batch.type,
        model=batch.model,
        prompt="",
        quality=batch.quality,
        aspect_ratio=batch.aspectRatio,
    ).config


def request_body(batch: BatchRecord, item: ItemRecord, image: bytes | None, catalog: Catalog) -> dict[str, Any]:
    """One GenerateContentRequest for a JSONL batch file."""
    request = item_request(batch, item, image, catalog)
    return {"contents": request.contents(base64_image=True), "generation_config": request.config}


def jsonl_line(batch: BatchRecord, item: ItemRecord, image: bytes | None, catalog: Catalog) -> dict[str, Any]:
    return {"key": item.itemId, "request": request_body(batch, item, image, catalog)}


def inline_request(batch: BatchRecord, item: ItemRecord, image: bytes | None, catalog: Catalog) -> dict[str, Any]:
    """The SDK's InlinedRequest shape (snake_case), carrying the item id as metadata."""
    request = item_request(batch, item, image, catalog)
    return {
        "contents": request.contents(base64_image=False),
        "config": request.config,
        "metadata": {"key": item.itemId},
    }


# gRPC codes Gemini puts on a failed request that another try may well get through:
# INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED.
TRANSIENT_GRPC_CODES = frozenset({13, 14, 4, 8})
_GRPC_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}

# Why Gemini gave no image or text, in words a user can act on, per finish reason (and prompt block
# reason): the values of Gemini's FinishReason and BlockReason enums (js-genai and python-genai types).
_FILTERED_IMAGE = "Gemini's safety filter blocked the image; describe a different subject or scene and try again"
_MALFORMED = "Gemini produced a malformed answer; try the request again"
_REASONS = {
    "SAFETY": "Gemini's safety filters blocked this request; change what the prompt describes and try again",
    "IMAGE_SAFETY": _FILTERED_IMAGE,
    # Flash image models report a filtered image as NO_IMAGE with no content at all (recorded live);
    # every request here carries a prompt, so an empty answer is the filter, not an empty request.
    "NO_IMAGE": _FILTERED_IMAGE,
    "PROHIBITED_CONTENT": "Gemini refused this request as prohibited content; it cannot be generated",
    "IMAGE_PROHIBITED_CONTENT": "Gemini refused the image as prohibited content; it cannot be generated",
    "BLOCKLIST": "The prompt contains terms Gemini blocks; remove them and try again",
    "SPII": "The prompt or image contains sensitive personal information; remove it and try again",
    "RECITATION": "The answer would have reproduced protected content; ask for something more original",
    "IMAGE_RECITATION": "The image would have reproduced a protected image; ask for something more original",
    "IMAGE_OTHER": "Gemini could not produce an image for this prompt; rephrase it and try again",
    "LANGUAGE": "Gemini does not support the language of the prompt; write it in another language",
    "MAX_TOKENS": "Gemini's answer was cut off at the output length limit; ask for a shorter answer",
    "MALFORMED_FUNCTION_CALL": _MALFORMED,
    "MALFORMED_RESPONSE": _MALFORMED,
    "UNEXPECTED_TOOL_CALL": _MALFORMED,
    "TOO_MANY_TOOL_CALLS": _MALFORMED,
    "MISSING_THOUGHT_SIGNATURE": _MALFORMED,
    "OTHER": "Gemini stopped for a reason it did not name; try again or rephrase the prompt",
}
# How much of Gemini's own words (a finish message, a refusal) an item's error carries.
SAID_CHARS = 300


@dataclass(frozen=True)
class Answer:
    """What one Gemini response means for its item."""

    image: bytes | None = None
    mime_type: str | None = None
    text: str | None = None
    error: str | None = None
    transient: bool = False  # a per-request error worth one more try in a follow-up job


def _get(data: Any, *names: str) -> Any:
    for name in names:
        if data is None:
            return None
        data = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
    return data


def _pick(data: Any, camel: str, snake: str) -> Any:
    value = _get(data, camel)
    return value if value is not None else _get(data, snake)


def _reason(code: Any, finish_message: Any = None) -> str:
    """The user-facing sentence for a finish or block reason, its enum name, and Gemini's own
    `finishMessage` when it sent one (it says what the filter saw and whether the call was billed)."""
    name = str(getattr(code, "value", code) or "")
    return _with_said(f"{_REASONS.get(name, 'Gemini returned no result')} ({name})", finish_message)


def _with_said(error: str, message: Any) -> str:
    said = str(message or "").strip()
    return f"{error}. Gemini said: {said[:SAID_CHARS]}" if said else error


def error_answer(error: Any) -> Answer:
    """A gRPC-style `{"code": 13, "message": ...}` per-request error; 13/14/4/8 are worth a retry."""
    raw = _get(error, "code")
    try:
        code = int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        code = 0
    status = _get(error, "status") or _GRPC_NAMES.get(code, "")
    message = _get(error, "message") or status or "unknown error"
    label = f"{code} {status}".strip() if code else str(status or "")
    return Answer(error=f"Gemini error {label}: {message}".replace("  ", " "), transient=code in TRANSIENT_GRPC_CODES)


def _decode(data: Any) -> bytes:
    """REST JSON carries standard base64; the SDK's JSON dump uses URL-safe base64; both decode here."""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    text = str(data)
    return base64.urlsafe_b64decode(text) if ("-" in text or "_" in text) else base64.b64decode(text)


def _is_thought(part: Any) -> bool:
    return bool(_get(part, "thought"))


def read_answer(line: Any, wants_image: bool) -> Answer:
    """Reads one result (`{"response": ...}` / `{"error": ...}`, a dict or an SDK object) into an Answer."""
    error = _get(line, "error")
    if error:
        return error_answer(error)
    response = _get(line, "response") or {}
    block = _pick(_get(response, "promptFeedback") or _get(response, "prompt_feedback"), "blockReason", "block_reason")
    if block:
        feedback = _get(response, "promptFeedback") or _get(response, "prompt_feedback")
        said = _pick(feedback, "blockReasonMessage", "block_reason_message")
        return Answer(error=f"{_reason(block, said)} (prompt blocked)")
    candidates = _get(response, "candidates") or []
    if not candidates:
        return Answer(error="Gemini returned no candidates")
    candidate = candidates[0]
    # Gemini 3 image models send up to two interim "thought" images before the final one: skip them.
    parts = [part for part in (_get(candidate, "content", "parts") or []) if not _is_thought(part)]
    texts = [text for part in parts if (text := _get(part, "text"))]
    images = [blob for part in parts if (blob := _pick(part, "inlineData", "inline_data")) is not None]
    finish = _pick(candidate, "finishReason", "finish_reason")
    finish = str(getattr(finish, "value", finish)) if finish else None
    finish_message = _pick(candidate, "finishMessage", "finish_message")
    if wants_image:
        if images:
            blob = images[-1]  # the last non-thought image is the final one
            data = _get(blob, "data")
            if data:
                return Answer(image=_decode(data), mime_type=_pick(blob, "mimeType", "mime_type") or "image/png")
        if finish and finish not in ("STOP", "FINISH_REASON_UNSPECIFIED", "NO_IMAGE"):
            return Answer(error=_reason(finish, finish_message))
        if texts:  # a text-only answer is the model declining (finish reason STOP or NO_IMAGE): its words
            said = " ".join(texts).strip()[:SAID_CHARS]
            return Answer(error=f"Gemini declined to draw this and returned no image; it said: {said}")
        if finish == "NO_IMAGE":  # and no content at all: filtered
            return Answer(error=_reason(finish, finish_message))
        return Answer(error=_with_said("Gemini returned no image (an empty answer)", finish_message))
    if texts:
        text = "".join(texts).encode("utf-8")[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")
        return Answer(text=text)
    if finish and finish != "STOP":
        return Answer(error=_reason(finish, finish_message))
    return Answer(error="Gemini returned an empty answer")
