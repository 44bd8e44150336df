"""The money invariants of tests/unit/test_money_properties.py (and of the second-wave flows, tests/unit/
test_money_properties_bulk.py) with the DynamoDB repository on moto (its conditional writes,
transactions, the sparse index and the request claims) instead of the in-memory store: fewer, slower
examples."""

from __future__ import annotations

import os
from decimal import Decimal

from hypothesis import HealthCheck, settings

from tests.conftest import JWT_SECRET, reset_service_caches
from tests.fakes import FakeServices, OnDynamo
from tests.unit.test_money_properties import PROFILE, USERS, MoneyMachine
from tests.unit.test_money_properties_bulk import BulkMoneyMachine

settings.register_profile(
    "moto-ci", max_examples=12, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "moto-long", max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "moto-bulk-ci", max_examples=5, stateful_step_count=16, deadline=None, suppress_health_check=list(HealthCheck)
)


class MotoMoneyMachine(MoneyMachine):
    def __init__(self) -> None:
        from moto import mock_aws

        from local.moto_atomic import make_dynamodb_atomic
        from local.provision import provision

        make_dynamodb_atomic()
        self._saved_environ = dict(os.environ)
        self._mock = mock_aws()
        self._mock.start()
        environment, _ = provision(settings={"JWT_SECRET": JWT_SECRET})
        os.environ.update(environment)
        reset_service_caches()
        super().__init__()
        self.services = OnDynamo()
        for user in USERS:  # the starter credits, on the DynamoDB store
            self.services.credits.adjust_balance(user, Decimal(100), "starter credits")

    def _ledger(self) -> list:
        credits = self.services.credits
        return [entry for user in ("u1", "u2") for entry in credits.list_ledger(user, limit=100_000)]  # type: ignore[call-arg]

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._mock.stop()
            os.environ.clear()
            os.environ.update(self._saved_environ)
            reset_service_caches()


MotoMoneyMachine.TestCase.settings = settings.get_profile("moto-long" if PROFILE == "long" else "moto-ci")
test_money_invariants_hold_on_the_dynamodb_repository = MotoMoneyMachine.TestCase


class MotoBulkMoneyMachine(BulkMoneyMachine):
    """File batches, schedules, templates, retries, replays and standard generations on the repository."""

    def __init__(self) -> None:
        from moto import mock_aws

        from local.moto_atomic import make_dynamodb_atomic
        from local.provision import provision

        make_dynamodb_atomic()
        self._saved_environ = dict(os.environ)
        self._mock = mock_aws()
        self._mock.start()
        environment, _ = provision(settings={"JWT_SECRET": JWT_SECRET})
        os.environ.update(environment)
        reset_service_caches()
        super().__init__()

    def _bulk_services(self) -> FakeServices:
        return OnDynamo()

    def _ledger(self) -> list:
        credits = self.services.credits
        return [entry for user in USERS for entry in credits.list_ledger(user, limit=100_000)]  # type: ignore[call-arg]

    def _generations(self) -> list[dict]:
        from batchgen.adapters.aws import client
        from batchgen.adapters.dynamo.codec import PHOTO_PREFIX, unmarshal, user_pk

        rows = []
        for user in USERS:
            response = client("dynamodb").query(
                TableName=os.environ["TABLE_NAME"],
                KeyConditionExpression="PK = :pk AND begins_with(SK, :photo)",
                ExpressionAttributeValues={":pk": {"S": user_pk(user)}, ":photo": {"S": PHOTO_PREFIX}},
                ConsistentRead=True,
            )
            rows += [unmarshal(row) for row in response.get("Items", [])]
        return rows

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._mock.stop()
            os.environ.clear()
            os.environ.update(self._saved_environ)
            reset_service_caches()


MotoBulkMoneyMachine.TestCase.settings = settings.get_profile("moto-long" if PROFILE == "long" else "moto-bulk-ci")
test_second_wave_money_invariants_hold_on_the_dynamodb_repository = MotoBulkMoneyMachine.TestCase
