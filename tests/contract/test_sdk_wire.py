"""The URLs and bodies the pinned google-genai SDK really sends for every call the service makes, recorded
by an httpx transport under the adapter's own client, held to the paths real Gemini traffic uses.

Evidence for each path (tests/contract/fixtures/README.md names the sources):
- the API version: every recorded body names `v1beta` (the Files API upload session URL and file URI,
  the downloaded responses file); google-genai 3.x alone would send `v1`;
- `upload/v1beta/files`: the real `x-goog-upload-url` of a resumable upload session;
- `v1beta/files/{id}`: the real File resource's `uri`; `files/{id}:download?alt=media`: the recorded
  download of a responses file (served under `download/v1beta/…` as a file's downloadUri, and under
  `v1beta/…` as the SDK asks);
- `batches/{id}`: the recorded operations' names; `models/{model}:batchGenerateContent`, `batches`,
  `batches/{id}:cancel`, `models/{model}:generateContent`: ai.google.dev/api/batch-api and the
  generateContent reference (read 2026-12-03), under the same `v1beta`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from batchgen import constants
from batchgen.adapters import gemini
from local.emulators.gemini import GeminiEmulator
from tests.gemini_samples import sample, sample_text

KEY = "contract-key"
VERSION = constants.GEMINI_API_VERSION


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingTransport(httpx2.HTTPTransport):
    """Every request the SDK sends, as sent; then on to the emulator like any request."""

    def __init__(self, allowed_host: str) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.allowed_host = allowed_host

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = urlsplit(str(request.url))
        self.sent.append(Sent(request.method, url.path, parse_qs(url.query), dict(request.headers), request.read()))
        if url.netloc != self.allowed_host:  # never out to the internet: the test fails on it instead
            return httpx2.Response(599, json={"error": {"code": 599, "message": f"left the emulator: {url.netloc}"}})
        return super().handle_request(request)

    def take(self) -> list[Sent]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    server = GeminiEmulator(delay_seconds=0).start()
    yield server
    server.stop()


@pytest.fixture
def recorder(emulator: GeminiEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingTransport]:
    transport = RecordingTransport(urlsplit(emulator.base_url).netloc)
    monkeypatch.setattr(gemini, "_cached_client", gemini.sdk_client(KEY, emulator.base_url, transport=transport))
    yield transport
    emulator.upload_url_base = None


def recorded_upload_path() -> str:
    """The path of the upload session URL Gemini really handed out."""
    headers = json.loads(sample_text("files_upload_start_ellmer_2026-06-17.json"))["response_headers"]
    return urlsplit(headers["x-goog-upload-url"]).path


def recorded_file_uri_path() -> str:
    return urlsplit(sample("files_upload_final_ellmer_2026-06-17.json")["file"]["uri"]).path


def test_the_sdk_is_the_pinned_major_and_the_version_is_named_explicitly():
    from google.genai import version

    assert version.__version__.split(".")[0] == "3"
    client = gemini.sdk_client(KEY, None)
    assert client._api_client._http_options.api_version == VERSION == "v1beta"


def test_upload_sends_the_start_and_the_chunks_to_the_recorded_upload_path(recorder):
    name = gemini.submit_file(iter([{"key": "k1", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}]), "c-in")
    start, *chunks = recorder.take()
    real_path = recorded_upload_path()
    assert real_path == f"/upload/{VERSION}/files"
    assert (start.method, start.path) == ("POST", real_path)
    assert start.headers["x-goog-upload-protocol"] == "resumable" and start.headers["x-goog-upload-command"] == "start"
    recorded_start = json.loads(json.loads(sample_text("files_upload_start_ellmer_2026-06-17.json"))["request_body"])
    assert start.json()["file"]["display_name"] == "c-in" and set(recorded_start["file"]) <= set(start.json()["file"])
    assert chunks and all(chunk.method == "POST" and chunk.path == real_path for chunk in chunks)
    assert set(chunks[-1].query) == set(parse_qs(urlsplit(real_upload_url()).query))  # upload_id, protocol
    assert re.fullmatch(r"files/[a-z0-9]+", name)
    # The file resource lives where the recorded File's `uri` says.
    gemini.delete_file(name)
    (deleted,) = recorder.take()
    assert (deleted.method, deleted.path) == ("DELETE", f"/{VERSION}/{name}")
    assert re.sub(r"[a-z0-9]+$", "ID", deleted.path) == re.sub(r"[a-z0-9]+$", "ID", recorded_file_uri_path())


def real_upload_url() -> str:
    return json.loads(sample_text("files_upload_start_ellmer_2026-06-17.json"))["response_headers"]["x-goog-upload-url"]


def test_create_from_a_file_then_get_list_cancel_delete_use_the_recorded_resource_paths(recorder):
    file_name = gemini.submit_file(iter([{"key": "k1", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}]), "f")
    recorder.take()
    job = gemini.create_job("gemini-3.1-flash-image", file_name, "batchgen-contract")
    (create,) = recorder.take()
    assert (create.method, create.path) == ("POST", f"/{VERSION}/models/gemini-3.1-flash-image:batchGenerateContent")
    assert create.json() == {"batch": {"displayName": "batchgen-contract", "inputConfig": {"fileName": file_name}}}
    real_name = sample("op_create_pending_cn-curl_2025-12-10.json")["name"]
    assert re.fullmatch(r"batches/[a-z0-9]+", job.name) and re.fullmatch(r"batches/[a-z0-9]+", real_name)

    gemini.get_job(job.name)
    assert [(s.method, s.path) for s in recorder.take()] == [("GET", f"/{VERSION}/{job.name}")]
    assert gemini.find_job_by_display_name("batchgen-contract") is not None
    (listed,) = recorder.take()
    assert (listed.method, listed.path, listed.query.get("pageSize")) == ("GET", f"/{VERSION}/batches", ["100"])
    gemini.cancel_job(job.name)
    assert [(s.method, s.path) for s in recorder.take()] == [("POST", f"/{VERSION}/{job.name}:cancel")]
    gemini.delete_job(job.name)
    assert [(s.method, s.path) for s in recorder.take()] == [("DELETE", f"/{VERSION}/{job.name}")]


def test_an_inline_create_carries_each_request_with_its_key(recorder):
    request = {
        "contents": [{"role": "user", "parts": [{"text": "a lamp"}]}],
        "config": {"response_modalities": ["TEXT"]},
    }
    gemini.create_job("gemini-3.6-flash", [{**request, "metadata": {"key": "gen_1"}}], "batchgen-inline")
    (create,) = recorder.take()
    assert (create.method, create.path) == ("POST", f"/{VERSION}/models/gemini-3.6-flash:batchGenerateContent")
    (sent,) = create.json()["batch"]["inputConfig"]["requests"]["requests"]
    assert sent["metadata"] == {"key": "gen_1"}
    assert sent["request"]["contents"][0]["parts"] == [{"text": "a lamp"}]
    assert sent["request"]["generationConfig"] == {"responseModalities": ["TEXT"]}


def test_the_responses_file_is_downloaded_from_its_recorded_path(recorder, emulator):
    file_name = gemini.submit_file(iter([{"key": "k1", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}]), "d")
    job = gemini.create_job("gemini-3.6-flash", file_name, "batchgen-download")
    view = gemini.get_job(job.name)
    recorder.take()
    assert [key for key, _ in gemini.iter_results(view)] == ["k1"]
    (download,) = recorder.take()
    assert download.method == "GET" and download.query == {"alt": ["media"]}
    assert download.path == f"/{VERSION}/{view.responses_file}:download"
    # The path a real responses-file line was downloaded from, as its source recorded it.
    recorded = re.search(r"/download/(v\w+)/files/batch-…:download\?alt=media", sample_text("SOURCES.md"))
    assert recorded is not None and recorded[1] == VERSION
    assert re.fullmatch(rf"/{recorded[1]}/files/batch-[a-z0-9]+:download", download.path)


def test_generate_content_goes_to_the_models_generate_content_path(recorder):
    gemini.generate_content(
        "models/gemini-3.1-flash-image",
        [{"role": "user", "parts": [{"text": "a red kite"}]}],
        {"response_modalities": ["TEXT", "IMAGE"], "image_config": {"image_size": "2K"}},
        timeout_seconds=5,
    )
    (generate,) = recorder.take()
    assert (generate.method, generate.path) == ("POST", f"/{VERSION}/models/gemini-3.1-flash-image:generateContent")
    body = generate.json()
    assert body["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"imageSize": "2K"}}


def test_the_emulator_answers_only_the_version_the_service_names(emulator):
    import requests

    headers = {"x-goog-api-key": KEY}
    assert requests.get(f"{emulator.base_url}/{VERSION}/batches", headers=headers, timeout=5).status_code == 200
    for other in ("v1", "v1alpha", "v2"):
        answer = requests.get(f"{emulator.base_url}/{other}/batches", headers=headers, timeout=5)
        assert answer.status_code == 404 and answer.json()["error"]["status"] == "NOT_FOUND"


# --- GEMINI_BASE_URL covers upload sessions -------------------------------------------------------
def test_upload_chunks_go_through_the_base_url_when_gemini_hands_out_its_own_upload_url(recorder, emulator):
    # Gemini behind a proxy: the session URL it answers names Google's own host, as recorded.
    real = urlsplit(real_upload_url())
    emulator.upload_url_base = f"{real.scheme}://{real.netloc}"
    name = gemini.submit_file(iter([{"key": "k1", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}]), "proxy")
    sent = recorder.take()
    assert {urlsplit(emulator.base_url).netloc} == {s.headers["host"] for s in sent}
    assert [s.path for s in sent] == [real.path] * len(sent) and len(sent) >= 2
    assert name in {f.name for f in emulator.files.values()}


def test_an_upload_url_is_rewritten_onto_the_base_url_with_its_path_prefix():
    real = real_upload_url()
    query = urlsplit(real).query
    assert gemini.upload_url_behind("https://proxy.example.com/gemini/", real) == (
        f"https://proxy.example.com/gemini/upload/v1beta/files?{query}"
    )
    assert (
        gemini.upload_url_behind("http://127.0.0.1:8080", real) == f"http://127.0.0.1:8080/upload/v1beta/files?{query}"
    )
    already = f"https://proxy.example.com/gemini/upload/v1beta/files?{query}"
    assert gemini.upload_url_behind("https://proxy.example.com/gemini", already) == already


# --- per-job webhooks -------------------------------------------------------------------------------
def test_a_create_with_per_job_webhooks_sends_webhook_config(recorder):
    from batchgen.domain.gemini_requests import webhook_config

    url = "http://127.0.0.1:9/v1/webhooks/gemini"  # the emulator's delivery finds nobody there, quickly
    config = webhook_config(url, "batch_1", 2)
    gemini.create_job("gemini-3.6-flash", [{"contents": [{"parts": [{"text": "hi"}]}]}], "batchgen-hook", config)
    (create,) = recorder.take()
    batch = create.json()["batch"]
    # As the SDK sends it: its keys as given (Google's JSON parser takes snake_case and lowerCamel alike).
    assert batch["webhookConfig"] == {"uris": [url], "user_metadata": {"batch_id": "batch_1", "chunk": 2}}
    gemini.create_job("gemini-3.6-flash", [{"contents": [{"parts": [{"text": "hi"}]}]}], "batchgen-nohook")
    assert "webhookConfig" not in recorder.take()[0].json()["batch"]
