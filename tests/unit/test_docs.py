"""The documentation stays true to itself and to the tree.

- The site builds strict (tests/docs/test_site.py: two builds of a few seconds each, kept out of the
  fast unit run; `make test` and `make docs` run them).
- Every relative link in README.md lands on a file of the repository and, with `#anchor`, on a
  heading there (GitHub's anchors); each heading under docs/ has the same anchor on GitHub and in the
  built site, so one link works in both.
- The "Where" column of every table in docs/architecture.md names only what exists: see
  `resolve_reference` for the forms a reference may take.
- docs/configuration.md names every field of `Settings`, and docs/deployment.md every CDK context key.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from batchgen.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "functions" / "batchgen"
DOCS = ROOT / "docs"
README = ROOT / "README.md"
ARCHITECTURE = DOCS / "architecture.md"
CONFIGURATION = DOCS / "configuration.md"
DEPLOYMENT = DOCS / "deployment.md"
# A path whose first folder is one of these is read from the repository root, any other from the package.
TOP_LEVEL_FOLDERS = ("functions", "infra", "local", "tests", "benchmarks", "clients", "docs")
FILE_SUFFIXES = (".py", ".json", ".html", ".js", ".css", ".md", ".toml", ".yml")

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
CODE_SPAN = re.compile(r"`([^`]+)`")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SETTING_NAME = re.compile(r"^[A-Z][A-Z0-9_]+$")


# --- links and anchors ----------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen."""
    text = _heading_text(heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def site_anchor(heading: str) -> str:
    """The anchor the site gives a heading (Python-Markdown's `toc` slugify, as mkdocs runs it)."""
    text = unicodedata.normalize("NFKD", _heading_text(heading)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _heading_text(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link reads as its text
    return text.replace("`", "").replace("*", "")


def headings(markdown: str) -> list[str]:
    return [match.group(2) for match in HEADING.finditer(FENCE.sub("", markdown))]


def relative_links(markdown: str) -> list[str]:
    prose = FENCE.sub("", markdown)
    return [target for target in LINK.findall(prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_every_relative_link_in_the_readme_lands() -> None:
    problems = []
    links = relative_links(README.read_text(encoding="utf-8"))
    for target in links:
        path_part, _, anchor = target.partition("#")
        file = (README.parent / path_part).resolve() if path_part else README
        if not file.exists():
            problems.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md":
            anchors = {github_anchor(text) for text in headings(file.read_text(encoding="utf-8"))}
            if anchor not in anchors:
                problems.append(f"{target}: no heading with the anchor #{anchor} in {file.relative_to(ROOT)}")

    assert any(target.startswith("docs/") for target in links), "the README links into docs/"
    assert not problems, "README.md links that go nowhere:\n" + "\n".join(problems)


def test_every_heading_in_the_docs_has_one_anchor_on_github_and_in_the_site() -> None:
    differing = [
        f"{page.name}: {text!r} is #{github_anchor(text)} on GitHub but #{site_anchor(text)} in the site"
        for page in sorted(DOCS.glob("*.md"))
        for text in headings(page.read_text(encoding="utf-8"))
        if github_anchor(text) != site_anchor(text)
    ]

    assert not differing, "reword these headings (drop dashes and non-ASCII):\n" + "\n".join(differing)


# --- where each rule lives ------------------------------------------------------------------------


@dataclass
class Module:
    """The names one Python file defines: top-level functions, classes and assignments, and the
    members (methods, class attributes) of its classes. Imported names do not count."""

    path: Path
    top_level: set[str] = field(default_factory=set)
    members: dict[str, set[str]] = field(default_factory=dict)

    def defines(self, dotted: str) -> bool:
        first, _, rest = dotted.partition(".")
        if not rest:
            return first in self.top_level or any(first in names for names in self.members.values())
        return "." not in rest and rest in self.members.get(first, set())


@cache
def read_module(path: Path) -> Module:
    module = Module(path)
    for node in _statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            module.top_level.add(node.name)
        elif isinstance(node, ast.ClassDef):
            module.top_level.add(node.name)
            module.members[node.name] = {name for member in _statements(node.body) for name in _defined(member)}
        else:
            module.top_level.update(_defined(node))
    return module


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements, looking inside `if` and `try` blocks (e.g. `if TYPE_CHECKING:`)."""
    for node in body:
        if isinstance(node, ast.If | ast.Try):
            yield from _statements(node.body)
            yield from _statements(node.orelse)
            if isinstance(node, ast.Try):
                yield from _statements([stmt for handler in node.handlers for stmt in handler.body])
                yield from _statements(node.finalbody)
        else:
            yield node


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}


@cache
def modules_by_stem() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found.setdefault(path.stem, []).append(path)
    return found


def _base(path_text: str) -> Path:
    return ROOT if path_text.split("/", 1)[0] in TOP_LEVEL_FOLDERS else PACKAGE


def resolve_reference(reference: str, context: Path | None) -> tuple[Path | None, str | None]:
    """Resolves one backticked reference of a "Where" cell; returns (the module or folder it names,
    if any, which becomes the context of the bare names after it in the cell; an error, or None).

    The forms, with paths under functions/batchgen/ unless they start with a top-level folder
    (functions/, infra/, local/, tests/, benchmarks/, clients/, docs/):
      `usecases/pipeline/settle.py`   a file;  `handlers/routes/`  a folder
      `settle.py`                     a file in the last folder named before it in the cell
      `usecases/pipeline/settle.end_batch`  a module and a name it defines (`Class.member` too)
      `repository.take_submit_lease`  a module named by its file name alone, when only one file has it
      `end_batch`, `sources()`        a name defined by the last module named before it in the cell
                                      (with none before it: by any module of the package)
      `GEMINI_MAX_ACTIVE_JOBS`        a name in capitals: defined there, or a `Settings` field, or in constants.py
    """
    reference = reference.removesuffix("()")
    if "/" not in reference and reference.endswith(FILE_SUFFIXES) and context is not None and context.is_dir():
        file = context / reference
        return (context, None) if file.is_file() else (context, f"no file {file.relative_to(ROOT)}")
    if "/" in reference or reference.endswith(FILE_SUFFIXES):
        return _resolve_path(reference)
    if SETTING_NAME.match(reference):
        known = (
            (context is not None and read_module(context).defines(reference))
            or reference.lower() in Settings.model_fields
            or read_module(PACKAGE / "constants.py").defines(reference)
        )
        return context, None if known else "neither defined there, nor a Settings field, nor in constants.py"
    if "." in reference:
        stem, _, names = reference.partition(".")
        candidates = modules_by_stem().get(stem, [])
        if len(candidates) != 1:
            where = ", ".join(str(path.relative_to(PACKAGE)) for path in candidates) or "none"
            return None, f"{len(candidates)} modules are named {stem}.py ({where}): give its path"
        return candidates[0], _check_defined(candidates[0], names)
    if not IDENTIFIER.match(reference):
        return context, "not a path, a module or a name (put prose outside the backticks)"
    if context is not None and context.is_dir():
        return context, f"a name after a folder: name its module ({context.relative_to(ROOT)}/<module>.{reference})"
    if context is not None:
        return context, _check_defined(context, reference)
    if any(read_module(path).defines(reference) for paths in modules_by_stem().values() for path in paths):
        return None, None
    return None, "no module of the package defines it"


def _resolve_path(reference: str) -> tuple[Path | None, str | None]:
    base = _base(reference)
    if reference.endswith("/"):
        folder = base / reference
        return (folder, None) if folder.is_dir() else (None, f"no folder {folder.relative_to(ROOT)}")
    if reference.endswith(FILE_SUFFIXES):
        file = base / reference
        if not file.is_file():
            return None, f"no file {file.relative_to(ROOT)}"
        return (file if file.suffix == ".py" else None), None
    parent, _, tail = reference.rpartition("/")
    stem, _, names = tail.partition(".")
    file = base / parent / f"{stem}.py"
    if not file.is_file():
        return None, f"no module {file.relative_to(ROOT)}"
    return file, _check_defined(file, names)


def _check_defined(module: Path, names: str) -> str | None:
    if read_module(module).defines(names):
        return None
    return f"{module.relative_to(ROOT)} defines no {names}"


def where_cells(markdown: str) -> Iterator[tuple[str, str]]:
    """(the row's first cell, its "Where" cell) for every row of every table with a "Where" column."""
    for table in re.findall(r"(?:^\|.*\|[ \t]*\n)+", FENCE.sub("", markdown), re.M):
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.splitlines()]
        if "Where" not in rows[0]:
            continue
        column = rows[0].index("Where")
        for row in rows[2:]:
            yield row[0], row[column]


def test_the_where_each_rule_lives_tables_name_only_what_exists() -> None:
    cells = list(where_cells(ARCHITECTURE.read_text(encoding="utf-8")))
    problems = []
    for row, cell in cells:
        references = CODE_SPAN.findall(cell)
        if not references:
            problems.append(f"{row!r}: names no file or symbol")
        context: Path | None = None
        for reference in references:
            context, error = resolve_reference(reference, context)
            if error:
                problems.append(f"{row!r}: `{reference}`: {error}")

    assert len(cells) >= 10, "docs/architecture.md has its tables of where each rule lives"
    assert not problems, (
        "docs/architecture.md names what is not in the tree (forms: tests/unit/test_docs.py, resolve_reference):\n"
        + "\n".join(problems)
    )


@pytest.mark.parametrize(
    ("reference", "context", "resolves"),
    [
        ("usecases/pipeline/settle.py", None, True),
        ("usecases/pipeline/no_such_module.py", None, False),
        ("handlers/routes/", None, True),
        ("domain/pricing.refund_amount", None, True),
        ("domain/pricing.no_such_function", None, False),
        ("config.Settings.from_environ", None, True),
        ("config.Settings.no_such_method", None, False),
        ("final_status", PACKAGE / "domain" / "states.py", True),
        ("final_status", PACKAGE / "domain" / "pricing.py", False),
        ("GEMINI_MAX_ACTIVE_JOBS", PACKAGE / "domain" / "pricing.py", True),
        ("NO_SUCH_SETTING", None, False),
        ("photo.refund_abandoned", None, False),  # three modules are named photo.py
        ("tests/unit/test_docs.py", None, True),
        ("settle.py", PACKAGE / "usecases" / "pipeline", True),
        ("settle.py", PACKAGE / "domain", False),
        ("end_batch", PACKAGE / "usecases" / "pipeline", False),
        ("a chunk's items", PACKAGE / "usecases" / "pipeline" / "chunks.py", False),
    ],
)
def test_a_reference_resolves_only_to_what_exists(reference: str, context: Path | None, resolves: bool) -> None:
    _, error = resolve_reference(reference, context)

    assert (error is None) is resolves, error


# --- settings -------------------------------------------------------------------------------------


def test_the_configuration_page_names_every_setting() -> None:
    named = set(CODE_SPAN.findall(FENCE.sub("", CONFIGURATION.read_text(encoding="utf-8"))))

    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in named)

    assert not missing, f"docs/configuration.md does not document: {', '.join(missing)}"


def context_keys() -> list[str]:
    """The keys of `infra.settings.CONTEXT_KEYS`, read from the source: importing aws-cdk-lib starts Node.js."""
    tree = ast.parse((ROOT / "infra" / "settings.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and "CONTEXT_KEYS" in _defined(node) and node.value:
            return list(ast.literal_eval(node.value))
    raise AssertionError("infra/settings.py defines no CONTEXT_KEYS")


def test_the_deployment_page_names_every_context_setting() -> None:
    named = set(CODE_SPAN.findall(FENCE.sub("", DEPLOYMENT.read_text(encoding="utf-8"))))

    missing = [key for key in context_keys() if key not in named]

    assert len(context_keys()) >= 10
    assert not missing, f"docs/deployment.md (Settings (CDK context)) does not document: {', '.join(missing)}"
