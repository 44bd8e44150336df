"""Acknowledging cdk-nag (AwsSolutions) findings, always with the reason written down.

cdk-nag v3 reads CDK's native `Validations.of(construct).acknowledge(...)`; an
acknowledgment covers the construct and everything below it. Granular findings
use the `RuleId[Finding]` form, e.g. `AwsSolutions-IAM5[Resource::*]`.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, reason: str, *rules: str) -> None:
    if len(reason) < 40:
        raise ValueError(f"a cdk-nag acknowledgment needs a real reason, got {reason!r}")
    for rule in rules:
        Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
