"""An in-memory Gemini: batch jobs created from files or inline requests, finished by the test, and the
standard endpoint's `generateContent`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from batchgen.domain.gemini_jobs import JOB_PENDING, JOB_SUCCEEDED, JobNotFound, JobView


@dataclass
class FakeJob:
    view: JobView
    results: list[tuple[str | None, Any]] = field(default_factory=list)


_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="


class FakeGemini:
    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.files: dict[str, list[dict[str, Any]]] = {}
        self.created: list[str] = []
        self.cancelled: list[str] = []
        self.deleted_files: list[str] = []
        self.fail_create: Exception | None = None
        self.webhooks: list[dict[str, Any] | None] = []  # each created job's webhook_config
        self.fail_generate: Exception | None = None  # the standard endpoint's call raises this
        self.answer: dict[str, Any] | None = None  # the standard endpoint's response (a PNG by default)

    def submit_file(self, lines: Iterable[dict[str, Any]], display_name: str) -> str:
        name = f"files/{len(self.files) + 1}"
        self.files[name] = list(lines)
        return name

    def create_job(
        self,
        model: str,
        source: str | list[dict[str, Any]],
        display_name: str,
        webhook: dict[str, Any] | None = None,
    ) -> JobView:
        if self.fail_create is not None:
            raise self.fail_create
        self.webhooks.append(webhook)
        name = f"batches/{len(self.jobs) + 1}"
        view = JobView(name, display_name, JOB_PENDING, None, None)
        self.jobs[name] = FakeJob(view)
        self.created.append(display_name)
        return view

    def finish(self, name: str, results: list[tuple[str | None, Any]], state: str = JOB_SUCCEEDED) -> None:
        job = self.jobs[name]
        job.view = JobView(name, job.view.display_name, state, "files/out" if results else None, None)
        job.results = results

    def get_job(self, name: str) -> JobView:
        if name not in self.jobs:
            raise JobNotFound(name)
        return self.jobs[name].view

    def find_job_by_display_name(self, display_name: str) -> JobView | None:
        return next((job.view for job in self.jobs.values() if job.view.display_name == display_name), None)

    def iter_results(self, job: JobView) -> Iterator[tuple[str | None, Any]]:
        return iter(self.jobs[job.name].results)

    def cancel_job(self, name: str) -> None:
        self.cancelled.append(name)

    def delete_job(self, name: str) -> None:
        self.jobs.pop(name, None)

    def delete_file(self, name: str | None) -> None:
        if name:
            self.deleted_files.append(name)

    def file_is_ready(self, name: str) -> bool:
        return name in self.files and name not in self.deleted_files

    def generate_content(
        self, model: str, contents: list[dict[str, Any]], config: dict[str, Any], timeout_seconds: float
    ) -> Any:
        if self.fail_generate is not None:
            raise self.fail_generate
        return self.answer or {
            "candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": _PNG}}]}}]
        }
