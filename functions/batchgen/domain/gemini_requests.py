"""Gemini request bodies for a batch's items, and the reading of Gemini's per-item answers."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from batchgen.config import Catalog
from batchgen.domain.pricing import model_kind
from batchgen.models.records import BatchRecord, ItemRecord

MAX_TEXT_BYTES = 100_000  # UTF-8 bytes one stored item may hold (DynamoDB items stop at 400 KB)


def job_display_name(batch_id: str) -> str:
    """Deterministic, so an interrupted submit can find the job it may already have created."""
    return f"batchgen-{batch_id}"


def full_prompt(batch: BatchRecord, item: ItemRecord) -> str:
    parts = [part.strip() for part in (batch.sharedPrompt, item.prompt) if part and part.strip()]
    prompt = "\n\n".join(parts)
    if batch.negativePrompt and batch.negativePrompt.strip():
        prompt += f"\n\nAvoid: {batch.negativePrompt.strip()}"
    return prompt


def generation_config(batch: BatchRecord, catalog: Catalog) -> dict[str, Any]:
    if model_kind(batch.type) == "text":
        return {"responseModalities": ["TEXT"]}
    image_config: dict[str, str] = {}
    if batch.aspectRatio:
        image_config["aspectRatio"] = batch.aspectRatio
    if batch.quality and catalog.models.get(batch.model, {}).get("imageSizes"):
        image_config["imageSize"] = catalog.imageSizeByQuality[batch.quality]
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    return config


def request_body(batch: BatchRecord, item: ItemRecord, image: bytes | None, catalog: Catalog) -> dict[str, Any]:
    """One GenerateContentRequest in the REST (camelCase) form used by JSONL batch files."""
    parts: list[dict[str, Any]] = [{"text": full_prompt(batch, item)}]
    if image is not None:
        parts.append({"inlineData": {"mimeType": item.imageMimeType, "data": base64.b64encode(image).decode()}})
    return {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": generation_config(batch, catalog),
    }


def jsonl_line(batch: BatchRecord, item: ItemRecord, image: bytes | None, catalog: Catalog) -> dict[str, Any]:
    return {"key": item.itemId, "request": request_body(batch, item, image, catalog)}


def inline_request(batch: BatchRecord, item: ItemRecord, image: bytes | None, catalog: Catalog) -> dict[str, Any]:
    """The SDK's InlinedRequest shape (snake_case), carrying the item id as metadata."""
    parts: list[dict[str, Any]] = [{"text": full_prompt(batch, item)}]
    if image is not None:
        parts.append({"inline_data": {"mime_type": item.imageMimeType, "data": image}})
    rest = generation_config(batch, catalog)
    config: dict[str, Any] = {"response_modalities": rest["responseModalities"]}
    if "imageConfig" in rest:
        config["image_config"] = {
            {"aspectRatio": "aspect_ratio", "imageSize": "image_size"}[key]: value
            for key, value in rest["imageConfig"].items()
        }
    return {
        "contents": [{"role": "user", "parts": parts}],
        "config": config,
        "metadata": {"key": item.itemId},
    }


@dataclass(frozen=True)
class Answer:
    """What one Gemini response means for its item."""

    image: bytes | None = None
    mime_type: str | None = None
    text: str | None = None
    error: str | None = None


def _get(data: Any, *names: str) -> Any:
    for name in names:
        if data is None:
            return None
        data = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
    return data


def read_answer(line: dict[str, Any], wants_image: bool) -> Answer:
    """Reads a REST-form result (`{"response": ...}` or `{"error": ...}`) into an Answer."""
    error = line.get("error")
    if error:
        code = error.get("code", "")
        return Answer(error=f"Gemini error {code}: {error.get('message') or error.get('status') or 'unknown'}".strip())
    response = line.get("response") or {}
    block = _get(response, "promptFeedback", "blockReason")
    if block:
        return Answer(error=f"Blocked by Gemini ({block})")
    candidates = response.get("candidates") or []
    if not candidates:
        return Answer(error="Gemini returned no candidates")
    candidate = candidates[0]
    parts = _get(candidate, "content", "parts") or []
    texts = [part["text"] for part in parts if isinstance(part, dict) and part.get("text")]
    images = [
        part.get("inlineData") or part.get("inline_data")
        for part in parts
        if isinstance(part, dict) and (part.get("inlineData") or part.get("inline_data"))
    ]
    finish = candidate.get("finishReason") or candidate.get("finish_reason")
    if wants_image:
        if images:
            blob = images[0]
            return Answer(
                image=base64.b64decode(blob["data"]),
                mime_type=blob.get("mimeType") or blob.get("mime_type") or "image/png",
            )
        reason = f"finish reason {finish}" if finish else "no image in the response"
        if finish in ("SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY", "BLOCKLIST", "RECITATION"):
            return Answer(error=f"Blocked by Gemini safety filters ({finish})")
        return Answer(error=f"Gemini returned no image ({reason})")
    if texts:
        text = "".join(texts).encode("utf-8")[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")
        return Answer(text=text)
    if finish and finish != "STOP":
        return Answer(error=f"Blocked by Gemini safety filters ({finish})")
    return Answer(error="Gemini returned an empty answer")


def sdk_response_to_rest(inlined: Any) -> dict[str, Any]:
    """An SDK InlinedResponse as the REST form `read_answer` understands."""
    if getattr(inlined, "error", None) is not None:
        error = inlined.error
        return {"error": {"code": getattr(error, "code", ""), "message": getattr(error, "message", "")}}
    response = inlined.response
    return {"response": response.model_dump(mode="json", by_alias=True, exclude_none=True) if response else {}}
