"""One set of runtime versions: constraints.txt, read by the development install and by the Lambda bundling,
with google-genai held to the major the contract tests ran."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from infra import PYPROJECT, REPO_ROOT
from infra.bundling import Target, constraints_file, pinned_versions, pip_install_command, runtime_requirements

PINS = pinned_versions(constraints_file(PYPROJECT))


def test_every_runtime_dependency_is_pinned_within_its_declared_range():
    declared = [Requirement(text) for text in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]
    for requirement in declared:
        pin = PINS.get(re.sub(r"[-_.]+", "-", requirement.name).lower())
        assert pin is not None, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pin), f"{requirement.name}=={pin} is outside {requirement.specifier}"


def test_google_genai_is_held_to_one_major():
    (genai,) = [
        Requirement(text)
        for text in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
        if text.startswith("google-genai")
    ]
    major = int(PINS["google-genai"].split(".")[0])
    assert genai.specifier.contains(f"{major}.99") and not genai.specifier.contains(f"{major + 1}.0")


def test_the_development_venv_runs_the_pinned_versions():
    for name, version in PINS.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a backport this interpreter does not need
        assert installed == version, f"{name}: the venv has {installed}, constraints.txt pins {version}"


def test_the_lambda_bundling_and_the_make_install_read_the_same_constraints(tmp_path: Path):
    command = pip_install_command(
        runtime_requirements(PYPROJECT), Target.lambda_arm64("python3.14"), tmp_path, constraints_file(PYPROJECT)
    )
    assert command[command.index("--constraint") + 1] == str(REPO_ROOT / "constraints.txt")
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*--constraint constraints\.txt -e \"\.\[dev\]\"", makefile)
    assert re.search(r"^\$\(VENV\)/\.installed: .*constraints\.txt", makefile, re.MULTILINE)
