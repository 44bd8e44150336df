"""The Gemini emulator's Flex tier and batch queueing, through the service's own adapter (the official SDK):
`service_tier` on generateContent, shedding with RetryInfo, models Flex does not serve, heavy-tailed job
delays and jobs that never leave PENDING."""

from __future__ import annotations

import time

import pytest

from batchgen.adapters import gemini as adapter
from batchgen.domain.errors import PermanentError, TransientError
from local.emulators.gemini import PENDING

TEXT_MODEL = "models/gemini-3.5-flash"
IMAGE_MODEL = "models/gemini-3.1-flash-image"
TEXT_CONFIG = {"response_modalities": ["TEXT"]}


def ask(prompt: str, model: str = TEXT_MODEL, tier: str | None = "flex") -> object:
    contents = [{"role": "user", "parts": [{"text": prompt}]}]
    return adapter.generate_content(model, contents, TEXT_CONFIG, 30, service_tier=tier)


def test_the_sdk_sends_the_flex_tier_and_the_emulator_answers_it(gemini):
    response = ask("a question")
    assert response.candidates[0].content.parts[0].text.startswith("Emulated answer")
    assert gemini.flex_calls == 1
    ask("a standard one", tier=None)
    assert gemini.flex_calls == 1 and gemini.generated == 2  # the standard call is not a Flex call


def test_a_shed_flex_call_is_a_transient_error_carrying_the_delay_gemini_names(gemini):
    gemini.flex_retry_delay_seconds = 7
    with pytest.raises(TransientError) as shed:
        ask("busy [[flex:shed]]")
    assert shed.value.retry_after_seconds == 7 and "503" in str(shed.value)
    ask("busy [[flex:shed]]", tier=None)  # the marker sheds Flex calls only


def test_flex_sheds_calls_with_its_probability(gemini):
    gemini.flex_shed_probability = 1.0
    with pytest.raises(TransientError):
        ask("anything")
    gemini.flex_shed_probability = 0.0
    ask("anything")


def test_a_model_flex_does_not_serve_is_refused_with_400(gemini):
    with pytest.raises(PermanentError) as refused:
        ask("a fox", model=IMAGE_MODEL)
    assert "Flex API is not supported for model" in str(refused.value)
    gemini.flex_models = None  # every model served
    ask("a fox", model=IMAGE_MODEL)


def test_flex_latency_comes_from_its_setting(gemini):
    gemini.flex_latency_seconds = (0.2, 0.2)
    started = time.monotonic()
    ask("a question")
    assert time.monotonic() - started >= 0.2  # at least the latency asked for (never an upper bound)


def test_a_job_holding_the_stuck_marker_never_leaves_pending_until_cancelled(gemini):
    job = adapter.create_job(TEXT_MODEL, [_inline("q [[job:stuck]]")], "batchgen-stuck")
    assert adapter.get_job(job.name).state == "JOB_STATE_PENDING"
    assert gemini.jobs[job.name].state == PENDING  # its delay (0 s) has long passed
    adapter.cancel_job(job.name)
    assert adapter.get_job(job.name).state == "JOB_STATE_CANCELLED"


def test_batch_delays_have_a_heavy_tail_fixed_per_job(gemini):
    gemini.delay_seconds, gemini.delay_sigma = 10.0, 1.0
    names = [f"batches/job{n}" for n in range(400)]
    delays = sorted(gemini._job_delay(name) for name in names)
    assert delays == sorted(gemini._job_delay(name) for name in names)  # the same for a job every time
    median, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99)]
    assert 7 < median < 14 and p99 > 5 * median  # lognormal(0, 1): e^2.33 ~ 10x the median


def test_a_share_of_jobs_never_starts_with_the_stuck_probability(gemini):
    gemini.stuck_probability = 0.5
    names = [adapter.create_job(TEXT_MODEL, [_inline("q")], f"batchgen-{n}").name for n in range(40)]
    pending = sum(adapter.get_job(name).state == "JOB_STATE_PENDING" for name in names)
    assert 5 < pending < 35  # the rest ended at once (delay 0)


def _inline(prompt: str) -> dict[str, object]:
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "config": TEXT_CONFIG,
        "metadata": {"key": "k"},
    }
