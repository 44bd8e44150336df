"""The import contract of the layers, read from the source (AST), so no module is imported.

Arrows point one way: ``batchgen.handlers`` → ``batchgen.usecases`` → ``batchgen.domain``; within the use
cases, the feature packages too (``pipeline`` ← ``bulk`` ← ``notify``; ``planning`` and ``routing`` on the
pipeline alone).
``batchgen.adapters`` implement what the use cases ask for: they may import ``domain`` and
``models`` but never ``handlers`` or ``usecases``. ``batchgen.domain`` imports no adapter, no
handler, no use case and no SDK (boto3, botocore, google.genai, cloudinary). Production code
(``functions/``) never imports the local runtime (``local``).

Every import counts, also one inside a function or under ``TYPE_CHECKING``: the arrow is the
dependency, not the moment it is loaded. `make gate` runs this module before the test suite.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
PACKAGE = FUNCTIONS / "batchgen"

SDKS = ("boto3", "botocore", "google.genai", "cloudinary")

# layer -> prefixes its modules must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "batchgen.domain": ("batchgen.adapters", "batchgen.handlers", "batchgen.usecases", *SDKS),
    "batchgen.usecases": ("batchgen.handlers",),
    # The use cases grouped by feature, arrows pointing one way: the pipeline imports no other feature;
    # bulk builds on the pipeline; notify on the pipeline and bulk (the results manifest subscribes to a
    # batch's end); planning and routing on the pipeline only.
    "batchgen.usecases.pipeline": tuple(f"batchgen.usecases.{f}" for f in ("bulk", "notify", "planning", "routing")),
    "batchgen.usecases.bulk": tuple(f"batchgen.usecases.{f}" for f in ("notify", "planning", "routing")),
    "batchgen.usecases.notify": tuple(f"batchgen.usecases.{f}" for f in ("planning", "routing")),
    "batchgen.usecases.planning": tuple(f"batchgen.usecases.{f}" for f in ("bulk", "notify", "routing")),
    "batchgen.usecases.routing": tuple(f"batchgen.usecases.{f}" for f in ("bulk", "notify", "planning")),
    "batchgen.adapters": ("batchgen.handlers", "batchgen.usecases"),
    # The DynamoDB stores share the table and its codec, nothing of the other adapters or their SDKs.
    "batchgen.adapters.dynamo": (
        *(f"batchgen.adapters.{name}" for name in ("gemini", "images_cdn", "storage", "messaging", "mail")),
        "batchgen.adapters.webhook_http",
        "google.genai",
        "cloudinary",
    ),
    "batchgen": ("local",),  # all of functions/
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(FUNCTIONS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """True when ``name`` is a module or package of this repository (functions/ or the root)."""
    for root in (FUNCTIONS, FUNCTIONS.parent):
        candidate = root.joinpath(*name.split("."))
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return True
    return False


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute: ``from x import y`` is ``x.y`` when y is a module, else ``x``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if alias.name != "*" and _is_module(submodule) else base


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations() -> set[tuple[str, str]]:
    """(importer, imported) for every import that a rule of FORBIDDEN bans."""
    found: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        banned = [prefix for layer, prefixes in FORBIDDEN.items() if _within(importer, layer) for prefix in prefixes]
        found.update((importer, imported) for imported in _imports(path) if any(_within(imported, p) for p in banned))
    return found


def test_the_package_is_where_the_contract_looks() -> None:
    assert (PACKAGE / "domain").is_dir() and (PACKAGE / "adapters").is_dir() and (PACKAGE / "handlers").is_dir()


def test_layers_import_one_way_only() -> None:
    broken = sorted(_violations())
    assert not broken, "imports against the layer contract (importer -> imported):\n" + "\n".join(
        f"  {importer} -> {imported}" for importer, imported in broken
    )


@pytest.mark.parametrize(
    ("importer", "source", "banned"),
    [
        ("batchgen.domain.x", "from batchgen.adapters import storage", "batchgen.adapters"),
        ("batchgen.domain.x", "import boto3", "boto3"),
        ("batchgen.domain.x", "from google.genai import types", "google.genai"),
        ("batchgen.domain.x", "from ..handlers import api", "batchgen.handlers"),
        ("batchgen.domain.x", "def f():\n    import cloudinary.uploader", "cloudinary"),
        ("batchgen.adapters.x", "from batchgen.usecases import submit", "batchgen.usecases"),
        ("batchgen.adapters.x", "from batchgen.handlers.api import app", "batchgen.handlers"),
        ("batchgen.adapters.dynamo.x", "from batchgen.adapters.gemini import get_job", "batchgen.adapters.gemini"),
        (
            "batchgen.usecases.pipeline.x",
            "from batchgen.usecases.notify.notify import request_relay",
            "batchgen.usecases.notify",
        ),
        (
            "batchgen.usecases.bulk.x",
            "from batchgen.usecases.notify.notify import request_relay",
            "batchgen.usecases.notify",
        ),
        ("batchgen.handlers.x", "from local.emulators import gemini", "local"),
    ],
)
def test_the_contract_catches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, importer: str, source: str, banned: str
) -> None:
    # Given a module with one forbidden import, in a throwaway copy of the package layout
    root = tmp_path / "functions"
    path = root.joinpath(*importer.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "FUNCTIONS", root)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root / "batchgen")
    # When
    found = _violations()
    # Then
    assert any(i == importer and _within(imported, banned) for i, imported in found), found


def test_the_contract_lets_the_arrows_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "functions"
    sources = {
        "batchgen.handlers.x": "from batchgen.usecases import y\nfrom batchgen.adapters import z\nimport boto3",
        "batchgen.usecases.y": "from batchgen.domain import states\nfrom batchgen.models import records",
        "batchgen.adapters.z": "import boto3\nfrom batchgen.domain import errors\nfrom batchgen.models import records",
        "batchgen.domain.w": "from batchgen.domain import states\nfrom batchgen import constants",
    }
    for module, source in sources.items():
        path = root.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source + "\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "FUNCTIONS", root)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root / "batchgen")
    assert _violations() == set()
