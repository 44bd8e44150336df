"""The Docker-free bundling produces a layer that imports, together with the code asset.

NETWORK: these tests run pip against the package index (about 10 s per platform).
Wheels for Lambda (arm64, CPython 3.14) cannot be imported on this machine, so:
- for the Lambda target they check what was installed (every dependency, native
  extensions built for aarch64 and the runtime's CPython, no AWS SDK);
- for the host target (same code path, host platform tags) they also import the
  layer plus the synthesized code asset in a clean interpreter whose only other
  path entry is the AWS SDK, as the Lambda runtime provides it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchgen.constants import FUNCTIONS
from infra import FUNCTIONS_DIR, PYPROJECT
from infra.bundling import (
    RUNTIME_PROVIDED,
    Target,
    bundle_dependencies,
    constraints_file,
    distribution_name,
    pinned_versions,
    runtime_requirements,
)
from infra.bytecode import stage_code
from infra.functions import RUNTIME

from .conftest import Synthesized

pytestmark = pytest.mark.bundling

LAMBDA = Target.lambda_arm64(RUNTIME.name)
HOST = Target.host() if sys.platform == "linux" else None
ELF_MACHINE = {"aarch64": 0xB7, "x86_64": 0x3E}
LAYER_LIMIT_BYTES = 250 * 1024 * 1024  # Lambda: function code plus layers, unzipped


def _elf_machine(target: Target) -> int:
    return next(code for machine, code in ELF_MACHINE.items() if target.platforms[0].endswith(machine))


@pytest.fixture(scope="module", params=[pytest.param(LAMBDA, id="lambda-arm64")])
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Target, Path]:
    target: Target = request.param
    # A fresh build directory: the test proves bundling works now, not that a cache exists.
    layer_dir = bundle_dependencies(pyproject=PYPROJECT, target=target, build_dir=tmp_path_factory.mktemp("bundle"))
    return target, layer_dir / "python"


def _installed_distributions(site: Path) -> set[str]:
    return {
        distribution_name(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        for dist_info in site.glob("*.dist-info")
    }


def test_layer_holds_every_runtime_dependency_and_not_the_aws_sdk(bundle: tuple[Target, Path]) -> None:
    _, site = bundle
    installed = _installed_distributions(site)
    for requirement in runtime_requirements(PYPROJECT):
        assert distribution_name(requirement) in installed, f"{requirement} missing from the layer"
    assert not RUNTIME_PROVIDED & installed
    assert not any((site / package).exists() for package in ("boto3", "botocore", "s3transfer"))
    assert (site / "jmespath").is_dir(), "Powertools imports jmespath directly: it must ship"
    size = sum(path.stat().st_size for path in site.rglob("*") if path.is_file())
    assert size < LAYER_LIMIT_BYTES // 2, f"layer is {size / 2**20:.0f} MiB unzipped"


def test_layer_holds_the_pinned_versions(bundle: tuple[Target, Path]) -> None:
    """The layer runs what the tests ran: constraints.txt, which the development venv is installed from."""
    _, site = bundle
    pins = pinned_versions(constraints_file(PYPROJECT))
    versions = {
        distribution_name(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0]): dist_info.name.removesuffix(
            ".dist-info"
        ).rsplit("-", 1)[1]
        for dist_info in site.glob("*.dist-info")
    }
    assert versions["google-genai"] == pins["google-genai"]
    assert {name: version for name, version in versions.items() if name in pins} == {
        name: pins[name] for name in versions if name in pins
    }


def test_native_extensions_are_built_for_the_target(bundle: tuple[Target, Path]) -> None:
    target, site = bundle
    extensions = list(site.rglob("*.so"))
    assert any("pydantic_core" in str(path) for path in extensions)
    expected_machine = _elf_machine(target)
    cpython_tag = "cpython-" + target.python_version.replace(".", "")
    for path in extensions:
        header = path.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", path
        assert int.from_bytes(header[18:20], "little") == expected_machine, f"{path} is built for another CPU"
        if ".cpython-" in path.name:
            assert cpython_tag in path.name, f"{path.name} is not for CPython {target.python_version}"


def _code_asset_dir(synthesized: Synthesized) -> Path:
    """The staged code asset of the session's synthesis (what `cdk deploy` would upload)."""
    functions = synthesized.resources("AWS::Lambda::Function").values()
    (key,) = {function["Properties"]["Code"]["S3Key"] for function in functions}
    directory = synthesized.assembly_dir / f"asset.{key.removesuffix('.zip')}"
    assert (directory / "batchgen" / "constants.py").is_file()
    assert (directory / "batchgen" / "catalog.json").is_file(), "package data must ship"
    tag = sys.implementation.cache_tag.split("-")[0] + "-" + LAMBDA.python_version.replace(".", "")
    for compiled in directory.rglob("*.pyc"):  # only where this machine has the runtime's Python
        assert f".{tag}." in compiled.name and _unchecked(compiled), f"{compiled} is not for the runtime's Python"
    return directory


def _aws_sdk_dir(tmp_path: Path) -> Path:
    """Stand-in for the Lambda runtime's own boto3/botocore and what they need (the runtime ships
    python-dateutil, urllib3 and six beside them): links to this environment's copies. jmespath is left
    out: Powertools imports it directly, so the layer must ship it."""
    sdk = tmp_path / "runtime-provided"
    sdk.mkdir()
    for package in ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None, f"{package} is needed to stand in for Lambda's SDK"
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            (sdk / package).symlink_to(origin.parent, target_is_directory=True)
        else:  # a single-module distribution (six)
            (sdk / origin.name).symlink_to(origin)
    return sdk


@pytest.fixture(scope="module")
def host_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Target, Path]:
    """The same bundling code path for this machine's platform: its output can be imported here."""
    assert HOST is not None, "the import check needs a Linux host"
    layer_dir = bundle_dependencies(pyproject=PYPROJECT, target=HOST, build_dir=tmp_path_factory.mktemp("host"))
    return HOST, layer_dir / "python"


def test_code_and_layer_import_in_a_clean_interpreter(
    host_bundle: tuple[Target, Path], synthesized: Synthesized, tmp_path: Path
) -> None:
    _target, site = host_bundle
    code = _code_asset_dir(synthesized)
    sdk = _aws_sdk_dir(tmp_path)
    handler_modules = sorted(
        {
            spec.handler.rsplit(".", 1)[0]
            for spec in FUNCTIONS
            if (code / (spec.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")).is_file()
        }
    )
    modules = [
        "batchgen.constants",
        "pydantic",
        "pydantic_core",
        "jwt",
        "cryptography",
        "aws_lambda_powertools",
        "aws_lambda_powertools.utilities.parameters",
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.event_handler",
        "google.genai",
        "cloudinary",
        *handler_modules,
    ]
    script = textwrap.dedent(
        f"""
        import importlib, json, sys
        sys.path[:0] = [{str(code)!r}, {str(site)!r}]   # /var/task, /opt/python
        sys.path.append({str(sdk)!r})                    # /var/runtime (boto3)
        from jwt.algorithms import has_crypto
        assert has_crypto, "pyjwt[crypto] lost cryptography"
        files = {{name: importlib.import_module(name).__file__ for name in {modules!r}}}
        print(json.dumps(files))
        """
    )
    # -I: ignore PYTHONPATH and user site; -S: no site-packages (this venv stays invisible).
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)
    for name, file in files.items():
        origin = Path(file).resolve()
        assert origin.is_relative_to(code.resolve()) or origin.is_relative_to(site.resolve()), (
            f"{name} was imported from {origin}, outside the bundle"
        )


def _unchecked(compiled: Path) -> bool:
    """A `.pyc` the runtime loads without comparing it to its source (PEP 552 flags: hash-based, unchecked)."""
    return int.from_bytes(compiled.read_bytes()[4:8], "little") == 0b01


def test_the_code_asset_and_the_layer_ship_bytecode_the_runtime_loads_without_its_sources(
    host_bundle: tuple[Target, Path], tmp_path: Path
) -> None:
    """Staged for this machine's Python (the Lambda one is compiled the same way by `python3.14`): every
    module has unchecked bytecode for that version, in the code asset and the layer, and an import in a
    read-only, write-nothing interpreter runs it (a source changed after staging is not even read)."""
    target, site = host_bundle
    code = stage_code(FUNCTIONS_DIR, target.python_version, tmp_path / "build")
    for root in (code / "batchgen", site / "pydantic"):
        sources = list(root.rglob("*.py"))
        assert sources
        for source in sources:
            compiled = Path(importlib.util.cache_from_source(str(source)))
            assert compiled.is_file() and _unchecked(compiled), f"{source} ships without its bytecode"
    (code / "batchgen" / "domain" / "ids.py").write_text("raise SystemExit('the source was compiled at start')\n")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(code)!r}, {str(site)!r}]
        import batchgen.domain.ids, pydantic_core
        print(batchgen.domain.ids.__cached__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_file()
