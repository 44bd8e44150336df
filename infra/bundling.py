"""Dependency bundling without Docker.

The Lambda code asset is the `batchgen` package of `functions/`, staged and compiled for the
runtime's Python (infra/bytecode.py); CDK hashes it. The third-party runtime dependencies from
`[project].dependencies` in pyproject.toml go into ONE Lambda layer, built here
by pip for the Lambda platform:

    pip install --target <dir>/python --platform manylinux2014_aarch64
        --platform manylinux_2_28_aarch64 --implementation cp
        --python-version 3.14 --only-binary=:all: <dependencies>

`--only-binary` makes pip pick the Linux/arm64 wheels (pydantic-core,
cryptography, ...) on any host, so no Docker and no arm64 machine is needed.
boto3/botocore come with the Lambda runtime: they are left out of the list and
removed again when another package pulls them in.

The versions come from `constraints.txt` beside pyproject.toml (`pip --constraint`): the resolved
runtime dependencies, pinned, which `make` installs into the development venv too, so the layer runs
exactly the SDK versions the tests ran (google-genai above all: a new major may change the URLs it
calls). `make lock` writes it from the venv after a deliberate upgrade.

The result is cached under build/lambda/deps-<key>/, keyed by the dependency
list, the pinned versions, the target platform and BUNDLE_FORMAT, so repeated
synths reuse it. The directory appears atomically (built in a temporary folder,
then renamed), so an interrupted pip run never leaves a half-built cache.

Caveat: pip evaluates environment markers (`; python_version < "3.13"`) against the
interpreter running it, not the target; at worst that adds a backport the runtime
does not need. The bundling test checks the result for the target.

Kept free of aws_cdk imports so the bundling test can use it on its own.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from infra.bytecode import compile_tree

# Bump when the layout or the pruning below changes, to invalidate caches.
BUNDLE_FORMAT = 4
CONSTRAINTS_NAME = "constraints.txt"

# Distributions the Lambda Python runtime already provides (the AWS SDK, with python-dateutil,
# urllib3 and six beside it in /var/runtime). A small dependency another package imports directly
# (jmespath for Powertools) is installed with that package and stays in the layer.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})

# Lambda Python 3.12+ runs on Amazon Linux 2023 (glibc 2.34): both wheel tags are loadable.
LAMBDA_ARM64_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")


@dataclass(frozen=True)
class Target:
    """Where the wheels must run: platform tags and CPython version ("3.14")."""

    platforms: tuple[str, ...]
    python_version: str
    implementation: str = "cp"

    @classmethod
    def lambda_arm64(cls, runtime_name: str) -> Target:
        """`runtime_name` is the Lambda runtime identifier, e.g. "python3.14"."""
        match = re.fullmatch(r"python(\d+\.\d+)", runtime_name)
        if not match:
            raise ValueError(f"not a Python Lambda runtime: {runtime_name!r}")
        return cls(platforms=LAMBDA_ARM64_PLATFORMS, python_version=match.group(1))

    @classmethod
    def host(cls) -> Target:
        """The machine running this code (Linux only): used to prove the bundle imports."""
        machine = platform.machine()
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return cls(platforms=(f"manylinux2014_{machine}", f"manylinux_2_28_{machine}"), python_version=version)


def distribution_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"cannot parse requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_requirements(pyproject: Path) -> list[str]:
    """`[project].dependencies` minus what the Lambda runtime provides."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return [req for req in project["dependencies"] if distribution_name(req) not in RUNTIME_PROVIDED]


def constraints_file(pyproject: Path) -> Path:
    """The pinned runtime versions read by both the bundling and the development install."""
    return pyproject.with_name(CONSTRAINTS_NAME)


def pinned_versions(constraints: Path) -> dict[str, str]:
    """`name==version` lines of a constraints file, by normalized distribution name."""
    pins = {}
    for line in constraints.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pins[distribution_name(name)] = version.strip()
    return pins


def cache_key(requirements: list[str], target: Target, constraints: str = "") -> str:
    payload = json.dumps(
        {
            "format": BUNDLE_FORMAT,
            "requirements": sorted(requirements),
            "constraints": constraints,
            "target": target.__dict__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def bundle_dependencies(*, pyproject: Path, target: Target, build_dir: Path) -> Path:
    """Build (or reuse) the layer directory; returns it. Its `python/` folder holds the packages."""
    requirements = runtime_requirements(pyproject)
    constraints = constraints_file(pyproject)
    layer_dir = build_dir / f"deps-{cache_key(requirements, target, constraints.read_text())}"
    if layer_dir.is_dir():
        return layer_dir

    build_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="deps-building-", dir=build_dir))
    try:
        site = staging / "python"
        _pip_install(requirements, target, site, constraints)
        _remove_distributions(site, RUNTIME_PROVIDED)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts, useless in a layer
        compile_tree(site, target.python_version, "/opt/python")  # for the runtime's Python (infra/bytecode.py)
        try:
            staging.rename(layer_dir)
        except OSError:
            if not layer_dir.is_dir():  # lost a race with a parallel synth: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in build_dir.glob("deps-*"):  # superseded by this build
        if re.fullmatch(r"deps-[0-9a-f]{16}", stale.name) and stale != layer_dir:
            shutil.rmtree(stale, ignore_errors=True)
    return layer_dir


def placeholder_layer(build_dir: Path) -> Path:
    """Layer directory used when bundling is skipped: synthesizes fast, must not be deployed."""
    layer_dir = build_dir / "deps-skipped"
    marker = layer_dir / "python" / "BUNDLING_SKIPPED.txt"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("Synthesized with skipBundling=true: this layer has no dependencies. Do not deploy.\n")
    return layer_dir


def pip_install_command(requirements: list[str], target: Target, site: Path, constraints: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--constraint",
        str(constraints),
        "--no-compile",  # pip would compile for this interpreter's version; `compile_tree` does the target's
        "--only-binary=:all:",
        "--implementation",
        target.implementation,
        "--python-version",
        target.python_version,
        "--target",
        str(site),
    ]
    for tag in target.platforms:
        command += ["--platform", tag]
    return [*command, *requirements]


def _pip_install(requirements: list[str], target: Target, site: Path, constraints: Path) -> None:
    command = pip_install_command(requirements, target, site, constraints)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            "pip could not bundle the Lambda dependencies "
            f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}\n"
            "Synthesize with `-c skipBundling=true` to skip bundling (the layer is then a placeholder)."
        )


def _remove_distributions(site: Path, names: frozenset[str]) -> None:
    """Delete installed distributions by their RECORD, the way pip uninstall would."""
    for dist_info in site.glob("*.dist-info"):
        name = distribution_name(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        if name not in names:
            continue
        record = dist_info / "RECORD"
        for line in record.read_text().splitlines() if record.exists() else []:
            relative = line.split(",", 1)[0]
            path = (site / relative).resolve()
            if path.is_relative_to(site.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
    for directory in sorted(site.iterdir(), reverse=True):
        if directory.is_dir() and not any(path.is_file() for path in directory.rglob("*")):
            shutil.rmtree(directory)  # package folders left empty by the removal


def runtime_closure(pyproject: Path) -> dict[str, str]:
    """The installed version of every runtime dependency and of everything they pull in (extras
    included), read from this environment: what `make lock` pins."""
    import importlib.metadata as metadata

    from packaging.requirements import Requirement

    found: dict[str, tuple[str, set[str]]] = {}
    todo = [Requirement(text) for text in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = distribution_name(requirement.name)
        known = found.get(name)
        if known is not None and set(requirement.extras) <= known[1]:
            continue
        distribution = metadata.distribution(requirement.name)
        extras = set(requirement.extras) | (known[1] if known else set())
        found[name] = (distribution.version, extras)
        for text in distribution.requires or []:
            inner = Requirement(text)
            wanted = inner.marker is None or any(inner.marker.evaluate({"extra": extra}) for extra in {"", *extras})
            if wanted:
                todo.append(inner)
    return {name: version for name, (version, _) in sorted(found.items())}


def write_constraints(pyproject: Path) -> Path:
    path = constraints_file(pyproject)
    header = (
        "# Pinned runtime dependencies: read by `make` (the development venv) and by infra/bundling.py (the\n"
        "# Lambda layer), so both run the same versions. Written by `make lock` from the venv; to upgrade,\n"
        "# install the new versions into .venv (within pyproject.toml's ranges), run the tests, then `make lock`.\n"
    )
    path.write_text(header + "".join(f"{name}=={version}\n" for name, version in runtime_closure(pyproject).items()))
    return path


if __name__ == "__main__":  # make lock
    from infra import PYPROJECT

    print(f"wrote {write_constraints(PYPROJECT)}")
