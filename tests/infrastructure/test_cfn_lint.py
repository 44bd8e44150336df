"""cfn-lint (errors and warnings) on the synthesized template."""

from __future__ import annotations

import json

from cfnlint.api import ManualArgs, lint

from .conftest import Synthesized

# Where the stack is expected to deploy; cfn-lint checks resource and runtime availability per region.
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-1"]
IGNORED = {
    # CDK adds an explicit DependsOn from each function to its role (and the role's policy) so the
    # policy exists before the function can run; the role half is redundant with the GetAtt, harmless.
    "W3005",
}


def test_template_passes_cfn_lint(synthesized: Synthesized) -> None:
    matches = lint(
        json.dumps(synthesized.template_json),
        config=ManualArgs(regions=REGIONS, ignore_checks=sorted(IGNORED)),
    )
    assert not matches, "\n".join(f"{m.rule.id} {m.message} at {'/'.join(map(str, m.path))}" for m in matches)
