"""One synthesis of the stack per test session, shared by every infrastructure test.

Dependency bundling is skipped (`skipBundling`): the layer is a placeholder, so
the session needs neither pip nor the network. test_bundling.py proves the real
bundle separately. cdk-nag is not registered as a synth-time plugin here:
test_cdk_nag.py runs the pack itself, so a finding fails that test only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bundling: runs pip against the package index to build the Lambda layer")


@dataclass(frozen=True)
class Synthesized:
    stack: Any  # infra.stack.BatchGenStack (imported lazily: aws_cdk starts a Node process)
    template: Any  # aws_cdk.assertions.Template
    template_json: dict[str, Any]
    assembly_dir: Path

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.get_logical_id(construct.node.default_child))

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from aws_cdk.assertions import Template

    from infra.stack import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(context={"skipBundling": True}, outdir=str(outdir), nag=False)
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_json = json.loads(Path(assembly.directory, artifact.template_file).read_text())
    return Synthesized(
        stack=stack,
        template=Template.from_json(template_json),
        template_json=template_json,
        assembly_dir=Path(assembly.directory),
    )
