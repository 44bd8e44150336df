"""Real Gemini wire samples (tests/contract/fixtures, sources in its README) through the service's parsing,
and the emulator's answers held to the same keys and enum values."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google import genai
from google.genai import types
from google.genai.batches import _BatchJob_from_mldev

from batchgen.adapters.gemini import _view, sdk_client
from batchgen.config import Catalog, load_catalog
from batchgen.domain.gemini_requests import jsonl_line, read_answer
from batchgen.domain.states import BatchStatus
from batchgen.domain.webhooks import job_names
from batchgen.models.records import BatchRecord, ItemRecord
from local.emulators.gemini import GeminiEmulator, _camel_case_key

FIXTURES = Path(__file__).with_name("fixtures")
KEY = "contract-key"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line]


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (list items share one path), for comparing shapes."""
    if isinstance(value, dict):
        paths = set()
        for key, inner in value.items():
            paths |= {f"{prefix}{key}"} | key_paths(inner, f"{prefix}{key}.")
        return paths
    if isinstance(value, list):
        return set().union(*(key_paths(item, f"{prefix}[].") for item in value)) if value else set()
    return set()


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    server = GeminiEmulator(delay_seconds=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(emulator: GeminiEmulator) -> genai.Client:
    return sdk_client(KEY, emulator.base_url)


def emulator_operation(emulator: GeminiEmulator, client: genai.Client, model: str) -> dict[str, Any]:
    path = FIXTURES.parent / "_input.jsonl"
    request = {"contents": [{"parts": [{"text": "Explain how AI works in a few words"}]}]}
    path.write_text(json.dumps({"key": "request_1", "request": request}) + "\n")
    try:
        uploaded = client.files.upload(file=str(path), config=types.UploadFileConfig(mime_type="jsonl"))
    finally:
        path.unlink()
    job = client.batches.create(model=model, src=uploaded.name, config={"display_name": "contract"})
    response = requests.get(f"{emulator.base_url}/v1beta/{job.name}", headers={"x-goog-api-key": KEY}, timeout=5)
    return response.json()


# --- batch operation ------------------------------------------------------------------------------
def test_the_recorded_operation_reads_as_a_succeeded_job_with_its_responses_file():
    operation = fixture("ellmer_operation_succeeded.json")
    job = _view(types.BatchJob._from_response(response=_BatchJob_from_mldev(operation), kwargs={}))
    assert job.state == "JOB_STATE_SUCCEEDED"
    assert job.responses_file == operation["response"]["responsesFile"]
    assert job.display_name == "ellmer-1783003258" and job.error is None


def test_the_emulators_operation_has_the_recorded_keys_and_enum_values(emulator, client):
    real = fixture("ellmer_operation_succeeded.json")
    ours = emulator_operation(emulator, client, "gemini-3.5-flash")
    assert set(ours) == set(real)
    assert key_paths(ours) == key_paths(real)  # same keys all the way down, e.g. batchStats counters
    assert ours["metadata"]["state"] == real["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert ours["metadata"]["@type"] == real["metadata"]["@type"]
    assert ours["response"]["@type"] == real["response"]["@type"]
    assert all(isinstance(value, str) for value in ours["metadata"]["batchStats"].values())  # int64 as strings


# --- responses-file lines -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ellmer_response_lines.jsonl", ["Des Moines", "Albany", "Sacramento", "Austin"]),
        (
            "cookbook_result_lines.jsonl",
            ["AI learns patterns from data to make decisions or predictions.", "Quantum computers use **qubits**"],
        ),
    ],
)
def test_recorded_text_lines_read_as_their_texts(name, expected):
    answers = [read_answer(line, wants_image=False) for line in lines(name)]
    assert all(answer.error is None for answer in answers)
    assert [answer.text[: len(text)] for answer, text in zip(answers, expected, strict=True)] == expected


def test_the_emulators_text_line_has_the_recorded_keys(emulator, client):
    job = client.batches.create(
        model="gemini-3.5-flash",
        src=[{"contents": [{"parts": [{"text": "hi"}]}], "metadata": {"key": "k"}}],
    )
    inline = client.batches.get(name=job.name).dest.inlined_responses[0].response
    ours = {"response": inline.model_dump(mode="json", by_alias=True, exclude_none=True)}
    real = lines("cookbook_result_lines.jsonl")[0]
    wanted = {"response.candidates", "response.candidates.[].content.parts.[].text", "response.candidates.[].index"}
    wanted |= {"response.candidates.[].finishReason", "response.usageMetadata.promptTokenCount"}
    assert wanted <= key_paths(real) and wanted <= key_paths(ours)
    assert ours["response"]["candidates"][0]["finishReason"] == real["response"]["candidates"][0]["finishReason"]


def test_the_real_1_59_mb_image_response_keeps_every_byte_both_ways():
    body = fixture("image_response_ellmer.json")
    png = base64.b64decode(body["candidates"][0]["content"]["parts"][0]["inlineData"]["data"])
    assert len(png) == 1_592_051 and png.startswith(b"\x89PNG\r\n\x1a\n")
    # A responses-file line (REST JSON, standard base64):
    assert read_answer({"key": "k", "response": body}, wants_image=True).image == png
    # An inline response (SDK object): the bytes are taken from the object, never from its JSON dump.
    sdk = types.InlinedResponse(response=types.GenerateContentResponse._from_response(response=body, kwargs={}))
    assert read_answer(sdk, wants_image=True).image == png
    # What the audit found: the SDK dumps bytes as URL-safe base64; standard decoding of this image raises.
    dumped = sdk.response.model_dump(mode="json", by_alias=True)["candidates"][0]["content"]["parts"][0]
    with pytest.raises(binascii.Error):
        base64.b64decode(dumped["inlineData"]["data"])


def test_the_code_13_line_is_a_transient_error_worth_one_retry():
    answer = read_answer(fixture("grpc_code_13_error_line.json"), wants_image=True)
    assert answer.transient and answer.image is None
    assert answer.error.startswith("Gemini error 13 INTERNAL: An internal error has occurred.")


# --- request lines --------------------------------------------------------------------------------
def test_our_request_lines_are_snake_case_like_the_cookbooks_executed_example():
    catalog: Catalog = load_catalog()
    batch = BatchRecord(
        batchId="b",
        userId="u",
        type="product",
        status=BatchStatus.PENDING,
        model="gemini-3-pro-image",
        quality="2k",
        aspectRatio="4:3",
        createdAt="2026-01-01T00:00:00.000Z",
        updatedAt="2026-01-01T00:00:00.000Z",
        requestCount=1,
        unitPrice=2,
        creditCost=2,
    )
    item = ItemRecord(batchId="b", itemId="gen_1", index=0, clientId="c", prompt="a lamp", imageMimeType="image/png")
    line = jsonl_line(batch, item, b"\x89PNG", catalog)
    assert _camel_case_key(line["request"]) is None
    # The cookbook's executed image example (Batch_mode.ipynb) writes exactly these names:
    assert line["request"]["generation_config"]["response_modalities"] == ["TEXT", "IMAGE"]
    assert set(line["request"]["contents"][0]["parts"][1]) == {"inline_data"}


# --- Files API ------------------------------------------------------------------------------------
def test_the_emulators_file_resource_has_the_recorded_keys(emulator, client, tmp_path):
    real = fixture("ellmer_files_upload_response.json")["file"]
    path = tmp_path / "apples.txt"
    path.write_text("apples")
    uploaded = client.files.upload(file=str(path), config=types.UploadFileConfig(display_name="apples.pdf"))
    response = requests.get(
        f"{emulator.base_url}/v1beta/{uploaded.name}", headers={"x-goog-api-key": KEY}, timeout=5
    ).json()
    assert set(response) == set(real)
    assert response["state"] == real["state"] == "ACTIVE" and response["source"] == real["source"] == "UPLOADED"
    start = fixture("ellmer_files_upload_start.json")
    assert json.loads(start["request_body"]) == {"file": {"display_name": "apples.pdf"}}  # snake, as the SDK sends


# --- webhooks -------------------------------------------------------------------------------------
def test_the_docs_thin_webhook_payload_names_its_job_and_the_emulators_has_its_shape(emulator, client):
    docs = fixture("docs_webhook_thin_payload.json")
    assert job_names(docs) == {"batches/batch_123456"}  # the id is shown without the prefix
    job = client.batches.create(model="gemini-3.5-flash", src=[{"contents": [{"parts": [{"text": "hi"}]}]}])
    ours = json.loads(emulator.webhook_body(emulator.jobs[job.name]))
    assert set(ours) == set(docs) and ours["type"] == docs["type"] and ours["version"] == docs["version"]
    assert set(ours["data"]) <= set(docs["data"]) and "/" not in ours["data"]["id"]
