"""The Gemini emulator, driven through the official google-genai SDK.

Why: production code talks to Gemini only through the SDK, so the emulator is
only useful if the SDK (unchanged, pointed by base URL) sees the real wire
protocol: batch states, sources and destinations, Files API uploads and
downloads, Google-style errors.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google import genai
from google.genai import errors, types

from batchgen.constants import GEMINI_API_VERSION
from local.emulators.gemini import GeminiEmulator

API_KEY = "emulator-key"
IMAGE_MODEL = "gemini-3.1-flash-image"
TEXT_MODEL = "gemini-3.5-flash"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    emu = GeminiEmulator(delay_seconds=0.3).start()
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def fresh(emulator: GeminiEmulator) -> None:
    emulator.reset()
    emulator.delay_seconds = 0.3


@pytest.fixture(scope="module")
def client(emulator: GeminiEmulator) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=emulator.base_url, api_version=GEMINI_API_VERSION)
    )


def image_request(prompt: str, aspect_ratio: str = "1:1") -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        # snake_case, as executed batch examples write JSONL requests (the parser 400s on camelCase)
        "generation_config": {
            "response_modalities": ["TEXT", "IMAGE"],
            "image_config": {"aspect_ratio": aspect_ratio, "image_size": "1K"},
        },
    }


def text_request(prompt: str) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "system_instruction": {"parts": [{"text": "Be brief."}]},
    }


def inline(prompt: str, image: bool = False) -> dict[str, Any]:
    """An InlinedRequest dict: the SDK wants its own shape here (contents/config/metadata), not wire JSON."""
    config = {"response_modalities": ["TEXT", "IMAGE"]} if image else {}
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}], "config": config}


def upload_jsonl(client: genai.Client, requests_by_key: dict[str, dict[str, Any]]) -> str:
    """Upload a batch input file the way submit does; return its name."""
    body = "\n".join(json.dumps({"key": key, "request": req}) for key, req in requests_by_key.items())
    uploaded = client.files.upload(
        file=io.BytesIO(body.encode()), config=types.UploadFileConfig(mime_type="jsonl", display_name="input")
    )
    assert uploaded.name
    return uploaded.name


def create(client: genai.Client, model: str, src: Any, display_name: str | None = None) -> str:
    """Create a batch job and return its name."""
    job = client.batches.create(model=model, src=src, config={"display_name": display_name})
    assert job.name
    return job.name


def wait_terminal(client: genai.Client, name: str, timeout: float = 5.0) -> tuple[types.BatchJob, list[str]]:
    """Poll like the production poller; return the final job and every state seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.batches.get(name=name)
        assert job.state is not None
        if not seen or seen[-1] != job.state.value:
            seen.append(job.state.value)
        if job.state.value in TERMINAL:
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"{name} not terminal after {timeout}s, states {seen}")


def download_lines(client: genai.Client, file_name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in client.files.download(file=file_name).decode().splitlines()]


def png_size(data: bytes) -> tuple[int, int]:
    """Validate signature, chunk CRCs and pixel data size; return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc
        chunks[kind] = payload
        offset += 12 + length
    assert set(chunks) == {b"IHDR", b"IDAT", b"IEND"}
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    return width, height


def sdk_image(response: types.GenerateContentResponse | None) -> bytes:
    """The PNG of an SDK-parsed response (last part, after the optional text part)."""
    assert response and response.candidates
    content = response.candidates[0].content
    assert content and content.parts
    blob = content.parts[-1].inline_data
    assert blob and blob.mime_type == "image/png" and blob.data
    return blob.data


def image_of(response: dict[str, Any]) -> bytes:
    parts = response["candidates"][0]["content"]["parts"]
    inline = [p["inlineData"] for p in parts if "inlineData" in p and not p.get("thought")]
    assert len(inline) == 1 and inline[0]["mimeType"] == "image/png"
    return base64.b64decode(inline[0]["data"])


def test_file_batch_goes_pending_running_succeeded_with_shuffled_keyed_results(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.delay_seconds = 2.0  # each state lasts a second: seen even on a loaded machine
    reqs = {
        "item-a": image_request("a red fox", "16:9"),
        "item-b": image_request("a blue whale"),
        "item-c": image_request("a green frog", "9:16"),
        "item-t": text_request("Describe a sunset"),
    }
    created = client.batches.create(
        model=IMAGE_MODEL, src=upload_jsonl(client, reqs), config={"display_name": "user1-batch1"}
    )

    assert created.name and created.name.startswith("batches/")
    assert created.state == types.JobState.JOB_STATE_PENDING
    assert created.display_name == "user1-batch1" and created.model == f"models/{IMAGE_MODEL}"
    assert created.create_time is not None and created.dest is None

    job, seen = wait_terminal(client, created.name)
    assert seen == ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert job.end_time is not None and job.dest is not None and job.dest.file_name
    assert job.src is None  # the SDK does not map inputConfig back for the Gemini API

    lines = download_lines(client, job.dest.file_name)
    assert sorted(line["key"] for line in lines) == sorted(reqs)
    assert [line["key"] for line in lines] != list(reqs), "results must not come back in request order"
    by_key = {line["key"]: line["response"] for line in lines}
    assert png_size(image_of(by_key["item-a"])) == (64, 36)
    assert png_size(image_of(by_key["item-b"])) == (64, 64)
    assert png_size(image_of(by_key["item-c"])) == (36, 64)
    assert image_of(by_key["item-a"]) != image_of(by_key["item-b"])
    text = by_key["item-t"]["candidates"][0]
    assert text["finishReason"] == "STOP"
    assert text["content"]["parts"] == [{"text": "Emulated answer to: Describe a sunset"}]
    assert by_key["item-t"]["usageMetadata"]["totalTokenCount"] > 0

    record = emulator.jobs[created.name]
    assert (record.name, record.display_name, record.model) == (
        created.name,
        "user1-batch1",
        f"models/{IMAGE_MODEL}",
    )
    assert (record.state, record.request_count, record.src_kind) == ("BATCH_STATE_SUCCEEDED", 4, "file")
    assert job.dest.file_name in emulator.files
    assert emulator.calls["create"] == 1 and emulator.calls["upload"] == 1


def test_results_are_deterministic_for_the_same_prompt(client: genai.Client, emulator: GeminiEmulator) -> None:
    emulator.delay_seconds = 0
    images = []
    for _ in range(2):
        job = client.batches.get(name=create(client, IMAGE_MODEL, [inline("same prompt", image=True)]))
        assert job.dest and job.dest.inlined_responses
        images.append(sdk_image(job.dest.inlined_responses[0].response))
    assert images[0] == images[1] and png_size(images[0]) == (64, 64)


def test_inline_sources_in_dict_and_typed_forms_keep_order_and_metadata(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.delay_seconds = 0.1
    src: list[Any] = [
        {
            "contents": [{"parts": [{"text": "a cat"}], "role": "user"}],
            "config": {"response_modalities": ["IMAGE"]},
            "metadata": {"key": "first"},
        },
        types.InlinedRequest(contents="a haiku about rain", metadata={"key": "second"}),
        types.InlinedRequest(
            contents="a dog",
            config=types.GenerateContentConfig(
                response_modalities=["image"], image_config=types.ImageConfig(aspect_ratio="4:3")
            ),
        ),
    ]
    name = create(client, IMAGE_MODEL, src, display_name="inline")
    job, _ = wait_terminal(client, name)

    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest is not None and job.dest.file_name is None
    responses = job.dest.inlined_responses or []
    assert [r.metadata for r in responses] == [{"key": "first"}, {"key": "second"}, None]
    first, second, third = (r.response for r in responses)
    assert first and second and third
    assert png_size(sdk_image(first)) == (64, 64)
    assert second.text == "Emulated answer to: a haiku about rain"
    assert png_size(sdk_image(third)) == (64, 48)
    assert emulator.jobs[name].src_kind == "inline"
    assert [entry.key for entry in emulator.jobs[name].requests] == ["first", "second", None]


def test_request_markers_fail_and_block_single_lines(client: genai.Client, emulator: GeminiEmulator) -> None:
    emulator.delay_seconds = 0
    src = upload_jsonl(
        client,
        {
            "ok": image_request("a lighthouse"),
            "bad": image_request("a storm [[fail]] at sea"),
            "unsafe": image_request("[[blocked]] something"),
        },
    )
    job, _ = wait_terminal(client, create(client, IMAGE_MODEL, src))

    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.dest and job.dest.file_name
    by_key = {line["key"]: line for line in download_lines(client, job.dest.file_name)}
    assert png_size(image_of(by_key["ok"]["response"])) == (64, 64)
    assert "response" not in by_key["bad"]
    # gRPC-style per-request error, as real responses files carry them: {"code", "message"}, no HTTP status
    assert set(by_key["bad"]["error"]) == {"code", "message"} and by_key["bad"]["error"]["code"] == 3
    assert by_key["bad"]["error"]["message"]
    blocked = by_key["unsafe"]["response"]["candidates"][0]
    assert blocked["finishReason"] == "SAFETY" and "content" not in blocked


@pytest.mark.parametrize(
    ("marker", "state"),
    [
        ("[[job:failed]]", types.JobState.JOB_STATE_FAILED),
        ("[[job:expired]]", types.JobState.JOB_STATE_EXPIRED),
    ],
)
def test_job_markers_end_the_whole_job_without_results(
    client: genai.Client, emulator: GeminiEmulator, marker: str, state: types.JobState
) -> None:
    emulator.delay_seconds = 0.1
    src = upload_jsonl(client, {"one": text_request("fine"), "two": text_request(f"doomed {marker}")})
    name = create(client, TEXT_MODEL, src)
    job, seen = wait_terminal(client, name)

    assert seen[-1] == state.value and job.dest is None and job.end_time is not None
    assert emulator.jobs[name].state == state.value.replace("JOB_", "BATCH_")
    assert not any(name.startswith("files/batch-") for name in emulator.files)


def test_cancel_stops_a_running_job_and_is_harmless_when_terminal(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.delay_seconds = 30
    name = create(client, TEXT_MODEL, [inline("slow")])
    client.batches.cancel(name=name)
    job = client.batches.get(name=name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED and job.dest is None and job.end_time is not None
    client.batches.cancel(name=name)
    assert client.batches.get(name=name).state == types.JobState.JOB_STATE_CANCELLED
    assert emulator.calls["cancel"] == 2


def test_delete_then_get_is_not_found(client: genai.Client) -> None:
    name = create(client, TEXT_MODEL, [inline("to delete")])
    client.batches.delete(name=name)
    with pytest.raises(errors.ClientError) as caught:
        client.batches.get(name=name)
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as caught:
        client.batches.delete(name=name)
    assert caught.value.code == 404


def test_list_pages_newest_first_and_finds_jobs_by_display_name(client: genai.Client, emulator: GeminiEmulator) -> None:
    names = [create(client, TEXT_MODEL, [inline(f"n{i}")], display_name=f"d{i}") for i in range(5)]
    pager = client.batches.list(config={"page_size": 2})
    assert [job.name for job in pager.page] == names[::-1][:2]
    listed = list(pager)
    assert [job.name for job in listed] == names[::-1]
    assert {job.display_name for job in listed} == {f"d{i}" for i in range(5)}
    assert emulator.calls["list"] == 3


def test_files_upload_get_download_delete(client: genai.Client, emulator: GeminiEmulator, tmp_path: Any) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b'{"key": "k", "request": {"contents": []}}\n')
    uploaded = client.files.upload(
        file=str(path), config=types.UploadFileConfig(mime_type="application/jsonl", display_name="my input")
    )
    assert uploaded.name and uploaded.name.startswith("files/")
    assert uploaded.display_name == "my input" and uploaded.size_bytes == path.stat().st_size
    assert uploaded.state == types.FileState.ACTIVE and uploaded.source == types.FileSource.UPLOADED

    fetched = client.files.get(name=uploaded.name)
    assert (fetched.name, fetched.mime_type, fetched.display_name) == (
        uploaded.name,
        "application/jsonl",
        "my input",
    )
    assert client.files.download(file=uploaded.name) == path.read_bytes()
    assert emulator.files[uploaded.name].data == path.read_bytes()

    client.files.delete(name=uploaded.name)
    with pytest.raises(errors.ClientError) as caught:
        client.files.get(name=uploaded.name)
    assert caught.value.code == 404
    with pytest.raises(errors.ClientError) as caught:
        client.files.download(file=uploaded.name)
    assert caught.value.code == 404
    assert [emulator.calls[op] for op in ("upload", "file_get", "download", "file_delete")] == [1, 2, 2, 1]


def test_responses_file_streams_over_plain_http(client: genai.Client, emulator: GeminiEmulator) -> None:
    emulator.delay_seconds = 0
    src = upload_jsonl(client, {f"k{i}": image_request(f"picture {i}") for i in range(6)})
    job = client.batches.get(name=create(client, IMAGE_MODEL, src))
    assert job.dest and job.dest.file_name
    file_id = job.dest.file_name.removeprefix("files/")
    meta = client.files.get(name=job.dest.file_name)
    url = f"{emulator.base_url}/v1beta/files/{file_id}:download?alt=media"
    assert meta.source == types.FileSource.GENERATED and meta.download_uri == url

    with requests.get(url, headers={"x-goog-api-key": API_KEY}, stream=True, timeout=5) as response:
        response.raise_for_status()
        keys = [json.loads(line)["key"] for line in response.iter_lines() if line]
    assert sorted(keys) == [f"k{i}" for i in range(6)]
    with requests.get(url, params={"key": API_KEY}, timeout=5) as response:
        assert response.content == client.files.download(file=job.dest.file_name)


def test_injected_faults_surface_as_sdk_errors_then_clear(client: genai.Client, emulator: GeminiEmulator) -> None:
    emulator.inject_fault(status=429, count=2, operation="create")
    for _ in range(2):
        with pytest.raises(errors.ClientError) as caught:
            create(client, TEXT_MODEL, [inline("x")])
        assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    name = create(client, TEXT_MODEL, [inline("x")])
    assert emulator.calls["create"] == 3 and list(emulator.jobs) == [name]

    emulator.inject_fault(status=503, count=1, operation="get")
    with pytest.raises(errors.ServerError) as server_error:
        client.batches.get(name=name)
    assert server_error.value.code == 503 and server_error.value.status == "UNAVAILABLE"
    assert client.batches.get(name=name).name == name

    emulator.inject_fault(status=500, count=5)
    emulator.clear_faults()
    assert client.batches.get(name=name).name == name


def test_sdk_retry_options_ride_over_transient_faults(emulator: GeminiEmulator) -> None:
    retrying = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=emulator.base_url,
            api_version=GEMINI_API_VERSION,
            retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0),
        ),
    )
    emulator.inject_fault(status=500, count=2, operation="list")
    assert list(retrying.batches.list()) == []
    assert emulator.calls["list"] == 3


def test_upload_faults_do_not_leave_partial_files(client: genai.Client, emulator: GeminiEmulator) -> None:
    emulator.inject_fault(status=503, count=1, operation="upload_chunk")
    with pytest.raises(errors.ServerError):
        upload_jsonl(client, {"k": text_request("x")})
    assert emulator.files == {}
    assert upload_jsonl(client, {"k": text_request("x")}) in emulator.files


def test_latency_is_added_per_operation(client: genai.Client, emulator: GeminiEmulator) -> None:
    name = create(client, TEXT_MODEL, [inline("x")])
    emulator.set_latency(1.0, operation="get")  # wide margins: the machine may be busy
    started = time.monotonic()
    client.batches.get(name=name)
    assert time.monotonic() - started >= 1.0
    emulator.set_latency(0, operation="get")
    started = time.monotonic()
    client.batches.get(name=name)
    assert time.monotonic() - started < 1.0


def test_missing_api_key_is_rejected(emulator: GeminiEmulator) -> None:
    response = requests.get(f"{emulator.base_url}/v1beta/batches", timeout=5)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"
    ok = requests.get(f"{emulator.base_url}/v1beta/batches", headers={"x-goog-api-key": "any"}, timeout=5)
    assert ok.status_code == 200 and ok.json() == {"operations": []}


def test_invalid_input_is_a_400_and_unknown_file_a_404(client: genai.Client, emulator: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        create(client, "Not A Model!", [inline("x")])
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"

    broken = client.files.upload(
        file=io.BytesIO(b'{"key": "k", "request": {}}\nnot json\n'), config={"mime_type": "jsonl"}
    )
    assert broken.name
    with pytest.raises(errors.ClientError) as caught:
        create(client, TEXT_MODEL, broken.name)
    assert caught.value.code == 400 and "line 2" in (caught.value.message or "")

    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(model=TEXT_MODEL, src="files/doesnotexist")
    assert caught.value.code == 404
    assert emulator.jobs == {}


# --- the emulator reproduces what the real API was seen doing -------------------------------


@pytest.mark.parametrize("retired", ["gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-2.5-flash"])
def test_retired_models_answer_404_on_create(client: genai.Client, retired: str) -> None:
    src = upload_jsonl(client, {"k": text_request("hello")})
    with pytest.raises(errors.ClientError) as error:
        create(client, retired, src)
    assert error.value.code == 404 and "is not found for API version" in str(error.value)


def test_jsonl_parser_rejects_camel_case_field_names_like_the_real_one(client: genai.Client) -> None:
    camel = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"temperature": 0}}
    src = upload_jsonl(client, {"k": camel})
    with pytest.raises(errors.ClientError) as error:
        create(client, TEXT_MODEL, src)
    assert error.value.code == 400 and "generationConfig" in str(error.value)
    # A JSON schema's own property names are the user's, not field names: they pass.
    schema = {"type": "object", "properties": {"firstName": {"type": "string"}}}
    snake = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "generation_config": {"response_mime_type": "application/json", "response_json_schema": schema},
    }
    create(client, TEXT_MODEL, upload_jsonl(client, {"k": snake}))


def test_gemini_3_image_answers_carry_two_thought_images_before_the_final_one(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.delay_seconds = 0
    job, _ = wait_terminal(client, create(client, IMAGE_MODEL, upload_jsonl(client, {"k": image_request("owl")})))
    (line,) = download_lines(client, job.dest.file_name)
    parts = line["response"]["candidates"][0]["content"]["parts"]
    assert [bool(part.get("thought")) for part in parts if "inlineData" in part] == [True, True, False]
    thoughts = [base64.b64decode(p["inlineData"]["data"]) for p in parts if p.get("thought")]
    assert image_of(line["response"]) not in thoughts  # the final image differs from the drafts


def test_transient_and_flaky_markers_give_grpc_code_13(client: genai.Client, emulator: GeminiEmulator) -> None:
    emulator.delay_seconds = 0
    reqs = {"t": text_request("always [[transient]]"), "f": text_request("once [[flaky]]")}
    job, _ = wait_terminal(client, create(client, TEXT_MODEL, upload_jsonl(client, reqs)))
    by_key = {line["key"]: line for line in download_lines(client, job.dest.file_name)}
    assert by_key["t"]["error"]["code"] == 13 and by_key["f"]["error"]["code"] == 13
    again, _ = wait_terminal(client, create(client, TEXT_MODEL, upload_jsonl(client, reqs)))
    by_key = {line["key"]: line for line in download_lines(client, again.dest.file_name)}
    assert by_key["t"]["error"]["code"] == 13 and "response" in by_key["f"]  # flaky: fine the second time


def test_late_output_marker_reads_succeeded_before_the_responses_file(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.delay_seconds = 0
    name = create(client, TEXT_MODEL, upload_jsonl(client, {"k": text_request("slow [[late-output]]")}))
    first = client.batches.get(name=name)
    assert first.state == types.JobState.JOB_STATE_SUCCEEDED and not (first.dest and first.dest.file_name)
    client.batches.get(name=name)
    assert client.batches.get(name=name).dest.file_name  # the file shows up a little later


def test_expired_once_marker_expires_the_first_job_holding_the_prompt_and_not_a_later_one(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    """`[[job:expired-once]]` (a chunk Gemini expires is resubmitted once): the same prompt in a
    second job succeeds; a job without the marker is unaffected."""
    emulator.delay_seconds = 0.1
    doomed = text_request("chunk [[job:expired-once]]")
    first = create(client, TEXT_MODEL, upload_jsonl(client, {"one": text_request("fine"), "two": doomed}))
    other = create(client, TEXT_MODEL, upload_jsonl(client, {"three": text_request("plain")}))
    second = create(client, TEXT_MODEL, upload_jsonl(client, {"two": doomed}))

    assert wait_terminal(client, first)[1][-1] == types.JobState.JOB_STATE_EXPIRED.value
    assert wait_terminal(client, other)[1][-1] == types.JobState.JOB_STATE_SUCCEEDED.value
    job, seen = wait_terminal(client, second)
    assert seen[-1] == types.JobState.JOB_STATE_SUCCEEDED.value and job.dest is not None
