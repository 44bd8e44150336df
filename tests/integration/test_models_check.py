"""`make models` (local/models.py): Gemini's models.list next to the catalog, flagging every id the service
uses that Gemini no longer lists, calls deprecated, or serves no batch mode for. Tested on a recorded
models.list body and through the SDK against the emulator, never against Google."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchgen.config import Catalog, load_catalog
from local.emulators.gemini import GeminiEmulator
from local.models import check_catalog, main

RECORDED = json.loads(
    (Path(__file__).parents[1] / "contract" / "fixtures" / "models_list_habeat-server.json").read_text()
)["models"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    server = GeminiEmulator(delay_seconds=0).start()
    yield server
    server.stop()


def with_text_default(model: str, *, deprecated: bool = True) -> Catalog:
    catalog = load_catalog("")
    spec = catalog.models["gemini-3.6-flash"]
    return catalog.model_copy(
        update={
            "models": {**{k: v for k, v in catalog.models.items() if k != "gemini-3.6-flash"}, model: spec},
            "defaultModels": {**catalog.defaultModels, "text": model},
            "deprecatedModels": catalog.deprecatedModels if deprecated else {},
            "retiredModels": {},
        }
    )


def test_on_a_recorded_list_ids_gemini_no_longer_lists_are_flagged_and_listed_batch_models_pass():
    # The recording is from 2025: none of today's catalog models was listed then.
    findings = {f.model: f.problem for f in check_catalog(load_catalog(""), RECORDED)}
    assert set(findings) == {"gemini-3.1-flash-image", "gemini-3-pro-image", "gemini-3.6-flash"}
    assert all(problem.startswith("not listed by Gemini") for problem in findings.values())
    # A text default Gemini listed then, with batch mode: nothing to flag; an embedding model has no batch mode.
    old = with_text_default("gemini-2.5-flash", deprecated=False)
    assert "gemini-2.5-flash" not in {f.model for f in check_catalog(old, RECORDED)}
    embedding = with_text_default("embedding-001", deprecated=False)
    (flag,) = [f for f in check_catalog(embedding, RECORDED) if f.model == "embedding-001"]
    assert flag.problem == "Gemini does not serve batchGenerateContent for it" and "default for text" in flag.used_as


def test_against_the_emulator_todays_catalog_is_clean(emulator):
    out = io.StringIO()
    assert main({"GEMINI_API_KEY": "k", "GEMINI_BASE_URL": emulator.base_url}, out) == 0, out.getvalue()
    text = out.getvalue()
    assert "Gemini lists 4 models (v1beta)" in text and "0 flagged" in text
    assert " * gemini-3.6-flash" in text and "   gemini-3.5-flash" in text  # listed, not used


def test_the_deprecated_text_model_of_before_is_flagged(emulator, tmp_path):
    # The catalog as it was: gemini-3.5-flash the default for text. Gemini still serves it (rerouted),
    # saying so in its description; make models flags it, as does the catalog's own deprecation map.
    stale = with_text_default("gemini-3.5-flash", deprecated=False)
    path = tmp_path / "catalog.json"
    path.write_text(stale.model_dump_json())
    out = io.StringIO()
    environ = {"GEMINI_API_KEY": "k", "GEMINI_BASE_URL": emulator.base_url, "CATALOG_PATH": str(path)}
    assert main(environ, out) == 1
    assert "! gemini-3.5-flash (catalog model, default for text): deprecated: Gemini 3.5 Flash is deprecated" in (
        out.getvalue()
    )
    marked = with_text_default("gemini-3.5-flash")  # with gemini-3.5-flash in deprecatedModels
    assert [f.problem for f in check_catalog(marked, []) if f.model == "gemini-3.5-flash"] == [
        "the catalog itself lists it as retired or deprecated"
    ]


def test_without_a_key_it_says_what_it_needs():
    out = io.StringIO()
    assert main({}, out) == 2 and "GEMINI_API_KEY" in out.getvalue()
