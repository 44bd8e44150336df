"""cdk-nag's AWS Solutions pack over the synthesized stack: no finding left unacknowledged."""

from __future__ import annotations

from aws_cdk import App, Stack, Validations
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks

from .conftest import Synthesized


def test_aws_solutions_pack_finds_nothing_unacknowledged(synthesized: Synthesized) -> None:
    report = AwsSolutionsChecks(synthesized.stack, verbose=True).validate_scope(synthesized.stack)
    findings = [
        f"{violation.rule_name} at {[r.resource_logical_id for r in violation.violating_resources]}: "
        f"{violation.description}"
        for violation in report.violations
    ]
    assert report.success, "\n".join(findings)
    assert not findings


def test_every_acknowledgment_gives_a_specific_reason(synthesized: Synthesized) -> None:
    acknowledged: dict[str, str] = {}
    for construct in synthesized.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry.data.items():
                    acknowledged[f"{construct.node.path} {rule}"] = reason
    assert acknowledged, "expected the documented acknowledgments (IAM5 grants, S1, SMG4, APIG*)"
    for where, reason in acknowledged.items():
        assert "AwsSolutions-" in where
        assert len(reason.split()) >= 12, f"{where}: reason too short: {reason!r}"
    # Acknowledgments sit on the resource they concern, never on the whole stack.
    assert not any(where.split(" ")[0] == synthesized.stack.node.path for where in acknowledged)


def test_the_pack_really_checks(synthesized: Synthesized) -> None:
    """Guard against a silently inert pack: a queue without a DLQ or TLS policy must be reported."""
    stack = Stack(App(), "NagCanary")
    sqs.Queue(stack, "Bare", encryption=sqs.QueueEncryption.UNENCRYPTED)
    report = AwsSolutionsChecks(stack).validate_scope(stack)
    assert not report.success
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= {v.rule_name for v in report.violations}
