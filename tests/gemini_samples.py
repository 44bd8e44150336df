"""Real Gemini API bodies recorded outside this project, read where they are kept: `../shared/gemini-samples`
beside the project root (CI has it too; SOURCES.md there says where each body comes from). They are
never copied into the repository. A git worktree looks beside its main checkout as well, and
`GEMINI_SAMPLES_DIR` points anywhere else."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _candidates() -> list[Path]:
    if os.environ.get("GEMINI_SAMPLES_DIR"):
        return [Path(os.environ["GEMINI_SAMPLES_DIR"])]
    roots = [ROOT]
    git = ROOT / ".git"
    if git.is_file():  # a worktree: ".git" names <main checkout>/.git/worktrees/<name>
        pointer = git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
        roots.append(Path(pointer).resolve().parents[2])
    return [root.parent / "shared" / "gemini-samples" for root in roots]


@lru_cache(maxsize=1)
def samples_dir() -> Path:
    for candidate in _candidates():
        if (candidate / "SOURCES.md").is_file():
            return candidate
    tried = ", ".join(str(path) for path in _candidates())
    raise FileNotFoundError(f"the recorded Gemini bodies are missing (looked in {tried}); set GEMINI_SAMPLES_DIR")


def sample_text(name: str) -> str:
    return (samples_dir() / name).read_text(encoding="utf-8")


def sample(name: str) -> Any:
    """A recorded JSON body."""
    return json.loads(sample_text(name))


def sample_lines(name: str) -> list[dict[str, Any]]:
    """The lines of a recorded JSONL body."""
    return [json.loads(line) for line in sample_text(name).splitlines() if line.strip()]
