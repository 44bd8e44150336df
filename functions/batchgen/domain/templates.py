"""Batch templates: `{{name}}` placeholders in prompts, filled from a create's `variables`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from batchgen.domain.errors import InvalidInput

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


def placeholders(texts: Iterable[str | None]) -> list[str]:
    """Every placeholder name in `texts`, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in PLACEHOLDER.finditer(text or ""):
            seen.setdefault(match.group(1))
    return list(seen)


def check_variables(texts: Iterable[str | None], variables: Mapping[str, str]) -> None:
    """A 400 naming every placeholder `variables` does not fill (all of them at once)."""
    missing = [name for name in placeholders(texts) if name not in variables]
    if missing:
        raise InvalidInput(
            f"Missing template variables: {', '.join(missing)}.",
            [{"loc": ["body", "variables", name], "msg": "missing template variable"} for name in missing],
        )


def fill(text: str | None, variables: Mapping[str, str]) -> str | None:
    if text is None:
        return None
    return PLACEHOLDER.sub(lambda match: variables.get(match.group(1), match.group(0)), text)
