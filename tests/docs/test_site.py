"""The documentation site (`mkdocs.yml`, `docs/`) builds with `mkdocs build --strict`, offline, which fails
on a broken link or anchor between the pages; a planted broken link and a planted broken anchor prove
that the configuration really fails on them. (Apart from tests/unit: each build takes seconds.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def build_site(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
        + ["--site-dir", str(site_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_site_builds_strict_with_every_link_and_anchor_whole(tmp_path: Path) -> None:
    result = build_site(ROOT / "mkdocs.yml", tmp_path / "site")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    built = {path.name for path in (tmp_path / "site").glob("*.html")}
    assert {page.with_suffix(".html").name for page in DOCS.glob("*.md")} <= built


def test_the_strict_build_fails_on_a_broken_link_and_on_a_broken_anchor(tmp_path: Path) -> None:
    # Given the project's own configuration and pages, one of them with a link to a page that is not
    # there and one to a heading that is not there (one build for both: each is reported by name)
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    page = tmp_path / "docs" / "index.md"
    planted = "\nSee [a page](no-such-page.md) and [a heading](api.md#no-such-heading).\n"
    page.write_text(page.read_text(encoding="utf-8") + planted, encoding="utf-8")

    # When the site is built
    result = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")

    # Then the build fails and names both links
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'no-such-page.md'" in output, output
    assert "'#no-such-heading'" in output, output
