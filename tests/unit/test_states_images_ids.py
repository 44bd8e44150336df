import base64

import pytest

from batchgen.domain import ids
from batchgen.domain.images import ImageError, decode_image, sniff_mime_type
from batchgen.domain.states import (
    BatchStatus,
    ItemStatus,
    can_transition,
    final_status,
    is_terminal,
    reported_item_status,
)
from tests.helpers import png_base64, png_bytes, png_data_url


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (BatchStatus.PENDING, BatchStatus.PROCESSING, True),
        (BatchStatus.PENDING, BatchStatus.CANCELLED, True),
        (BatchStatus.PROCESSING, BatchStatus.COMPLETED, True),
        (BatchStatus.PROCESSING, BatchStatus.EXPIRED, True),
        (BatchStatus.PENDING, BatchStatus.COMPLETED, False),
        (BatchStatus.COMPLETED, BatchStatus.CANCELLED, False),
        (BatchStatus.CANCELLED, BatchStatus.PROCESSING, False),
        (BatchStatus.FAILED, BatchStatus.COMPLETED, False),
    ],
)
def test_batch_transitions(current, target, allowed):
    assert can_transition(current, target) is allowed


def test_terminal_and_final_status():
    assert not is_terminal(BatchStatus.PROCESSING)
    assert all(
        is_terminal(s) for s in (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.EXPIRED)
    )
    assert final_status(1) is BatchStatus.COMPLETED
    assert final_status(0) is BatchStatus.FAILED


def test_pending_item_reads_processing_once_the_batch_is_at_gemini():
    assert reported_item_status(ItemStatus.PENDING, BatchStatus.PENDING) is ItemStatus.PENDING
    assert reported_item_status(ItemStatus.PENDING, BatchStatus.PROCESSING) is ItemStatus.PROCESSING
    assert reported_item_status(ItemStatus.SUCCESS, BatchStatus.PROCESSING) is ItemStatus.SUCCESS


def test_images_decode_from_base64_and_data_urls():
    assert decode_image(png_base64()).data == png_bytes()
    assert decode_image(png_data_url()).mime_type == "image/png"
    assert sniff_mime_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mime_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not base64!!", "not valid base64"),
        (base64.b64encode(b"GIF89a....").decode(), "not a PNG, JPEG or WEBP"),
        ("data:image/png;base64", "not a base64 data URL"),
        ("", "empty"),
    ],
)
def test_bad_images_are_refused_with_a_reason(text, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(text)


def test_image_size_cap():
    big = base64.b64encode(png_bytes() + b"\x00" * 2048).decode()
    with pytest.raises(ImageError, match="limit"):
        decode_image(big, max_bytes=1024)


def test_generation_ids_name_their_batch():
    batch_id = ids.new_batch_id()
    assert ids.is_batch_id(batch_id)
    generation = ids.generation_id(batch_id, 7)
    assert ids.batch_id_of_generation(generation) == batch_id
    assert ids.batch_id_of_generation("gen_123") is None
    assert ids.batch_id_of_generation("../etc/passwd") is None
