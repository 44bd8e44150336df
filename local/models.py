"""`make models`: the models Gemini serves (models.list, with the real GEMINI_API_KEY), and every model id the
catalog uses that Gemini no longer lists (retired: a create would answer 404), calls deprecated, or does
not serve batch mode for. An operator runs it before a deprecation bites; it exits 1 when it flags one.

Never run by the tests against Google: its logic is tested against a recorded models.list body and the
emulator (`tests/integration/test_models_check.py`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batchgen import constants
from batchgen.config import Catalog, load_catalog

_DEPRECATED = re.compile(r"\bdeprecat|\bshut ?down\b|\bno longer (?:available|supported)\b", re.IGNORECASE)
BATCH_METHOD = "batchGenerateContent"


@dataclass(frozen=True)
class Finding:
    model: str
    problem: str
    used_as: str


def catalog_ids(catalog: Catalog) -> dict[str, str]:
    """Every model id the service sends to Gemini, with what it is used as."""
    used: dict[str, list[str]] = {}
    for model in catalog.models:
        used.setdefault(model, []).append("catalog model")
    for batch_type, model in catalog.defaultModels.items():
        used.setdefault(model, []).append(f"default for {batch_type}")
    for alias, model in catalog.aliases.items():
        used.setdefault(model, []).append(f"target of alias {alias}")
    for old, model in (*catalog.retiredModels.items(), *catalog.deprecatedModels.items()):
        used.setdefault(model, []).append(f"successor of {old}")
    return {model: ", ".join(uses) for model, uses in sorted(used.items())}


def check_catalog(catalog: Catalog, listed: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """`listed`: models.list entries in the REST shape (`name`, `description`, `supportedGenerationMethods`)."""
    by_id = {str(model.get("name", "")).removeprefix("models/"): model for model in listed}
    findings = []
    for model, used_as in catalog_ids(catalog).items():
        entry = by_id.get(model)
        if model in catalog.retiredModels or model in catalog.deprecatedModels:
            findings.append(Finding(model, "the catalog itself lists it as retired or deprecated", used_as))
        elif entry is None:
            findings.append(Finding(model, "not listed by Gemini: retired or unknown (a create answers 404)", used_as))
        elif _DEPRECATED.search(f"{entry.get('displayName', '')} {entry.get('description', '')}"):
            findings.append(Finding(model, f"deprecated: {entry.get('description', '')}", used_as))
        elif BATCH_METHOD not in (entry.get("supportedGenerationMethods") or []):
            findings.append(Finding(model, f"Gemini does not serve {BATCH_METHOD} for it", used_as))
    return findings


def listed_models(api_key: str, base_url: str | None) -> list[dict[str, Any]]:
    """models.list through the service's own SDK client (pinned version, explicit API version)."""
    from batchgen.adapters.gemini import sdk_client

    client = sdk_client(api_key, base_url)
    return [
        {
            "name": model.name,
            "displayName": model.display_name,
            "description": model.description,
            "supportedGenerationMethods": list(model.supported_actions or []),
        }
        for model in client.models.list(config={"page_size": 1000})
    ]


def main(environ: Mapping[str, str] | None = None, out: Any = None) -> int:
    environ = os.environ if environ is None else environ
    out = out or sys.stdout
    key = environ.get(constants.ENV_GEMINI_API_KEY)
    if not key:
        print("make models needs GEMINI_API_KEY (a real key; GEMINI_BASE_URL is honoured too).", file=out)
        return 2
    catalog = load_catalog(environ.get(constants.ENV_CATALOG_PATH, ""))
    listed = listed_models(key, environ.get(constants.ENV_GEMINI_BASE_URL) or None)
    used = catalog_ids(catalog)
    print(f"Gemini lists {len(listed)} models ({constants.GEMINI_API_VERSION}):", file=out)
    for entry in sorted(listed, key=lambda model: str(model["name"])):
        model = str(entry["name"]).removeprefix("models/")
        batch = "batch" if BATCH_METHOD in entry["supportedGenerationMethods"] else "     "
        mark = "*" if model in used else " "
        print(f" {mark} {model:<44} {batch}  {entry.get('displayName') or ''}", file=out)
    findings = check_catalog(catalog, listed)
    print(f"\nThe catalog uses {len(used)} model ids (* above); {len(findings)} flagged:", file=out)
    for finding in findings:
        print(f" ! {finding.model} ({finding.used_as}): {finding.problem}", file=out)
    if findings:
        print("\nUpdate functions/batchgen/catalog.json (see ai.google.dev/gemini-api/docs/deprecations).", file=out)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
