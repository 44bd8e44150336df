"""Compiled bytecode for the Lambda runtime's Python, in the code asset and in the layer.

Lambda's `/var/task` and `/opt` are read-only: a module shipped as source is compiled on every cold
start and the result thrown away (`benchmarks/cold_start.py` prints both costs). So both are compiled
here, by an interpreter of the runtime's own version (bytecode is version-specific), in
`unchecked-hash` mode: the runtime loads each `.pyc` without comparing it to its source's modification
time, which a zip does not keep exactly. Without such an interpreter on the synthesizing machine
(`python3.14` on PATH for the runtime the stack uses) the asset ships source only and a warning says
so: it still runs, with the slower cold start.

The code asset is a staged copy of `functions/batchgen` under build/lambda/code-<key>/, keyed by its
files' contents and the version, so repeated synths reuse it and CDK's asset hash changes only when the
code does.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE_PATTERNS = ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache")
PACKAGE = "batchgen"


def interpreter_for(version: str) -> str | None:
    """An interpreter of this `major.minor` version: this one, or `python<version>` on PATH."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    return shutil.which(f"python{version}")


def compile_tree(directory: Path, version: str, shown_as: str) -> bool:
    """Compiles every module under `directory` for Python `version`; tracebacks name the files under
    `shown_as` (where Lambda mounts them). False (and a warning) when no such interpreter is found."""
    python = interpreter_for(version)
    if python is None:
        print(
            f"warning: no python{version} found: {directory.name} ships without bytecode (slower cold starts)",
            file=sys.stderr,
        )
        return False
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    command += ["-s", str(directory), "-p", shown_as, str(directory)]
    subprocess.run(command, check=True, capture_output=True)
    return True


def _sources(root: Path) -> list[Path]:
    ignored = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".pyc" and not any(part in ignored for part in path.parts)
    )


def stage_code(functions_dir: Path, version: str, build_dir: Path) -> Path:
    """The code asset's directory: `batchgen` copied from `functions_dir` and compiled for `version`."""
    package = functions_dir / PACKAGE
    digest = hashlib.sha256(f"{version}|{interpreter_for(version) is not None}".encode())
    for path in _sources(package):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    staged = build_dir / f"code-{digest.hexdigest()[:16]}"
    if staged.is_dir():
        return staged
    build_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="code-building-", dir=build_dir))
    try:
        shutil.copytree(package, staging / PACKAGE, ignore=shutil.ignore_patterns(*CACHE_PATTERNS))
        compile_tree(staging, version, "/var/task")
        try:
            staging.rename(staged)
        except OSError:
            if not staged.is_dir():  # lost a race with a parallel synth: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in build_dir.glob("code-*"):
        if len(stale.name) == 21 and stale != staged:
            shutil.rmtree(stale, ignore_errors=True)
    return staged
