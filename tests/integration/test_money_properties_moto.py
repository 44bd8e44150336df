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
from tests.unit.test_money_properties_routes import RoutesMoneyMachine

settings.register_profile(
    "moto-ci", max_examples=12, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "moto-long", max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "moto-bulk-ci", max_examples=5, stateful_step_count=16, deadline=None, suppress_health_check=list(HealthCheck)
)


class OnMoto:
    """A money machine's store on DynamoDB (moto, its transactions made atomic): started before the
    machine, stopped and the environment restored after it; every user's whole ledger read back."""

    services: FakeServices

    def _start_moto(self) -> None:
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

    def _ledger(self) -> list:
        credits = self.services.credits
        return [entry for user in USERS for entry in credits.list_ledger(user, limit=100_000)]  # type: ignore[call-arg]

    def teardown(self) -> None:
        try:
            super().teardown()  # type: ignore[misc]
        finally:
            self._mock.stop()
            os.environ.clear()
            os.environ.update(self._saved_environ)
            reset_service_caches()


class MotoMoneyMachine(OnMoto, MoneyMachine):
    def __init__(self) -> None:
        self._start_moto()
        super().__init__()
        self.services = OnDynamo()
        for user in USERS:  # the starter credits, on the DynamoDB store
            self.services.credits.adjust_balance(user, Decimal(100), "starter credits")


MotoMoneyMachine.TestCase.settings = settings.get_profile("moto-long" if PROFILE == "long" else "moto-ci")
test_money_invariants_hold_on_the_dynamodb_repository = MotoMoneyMachine.TestCase


class MotoBulkMoneyMachine(OnMoto, BulkMoneyMachine):
    """File batches, schedules, templates, retries, replays and standard generations on the repository."""

    def __init__(self) -> None:
        self._start_moto()
        super().__init__()

    def _bulk_services(self) -> FakeServices:
        return OnDynamo()

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


MotoBulkMoneyMachine.TestCase.settings = settings.get_profile("moto-long" if PROFILE == "long" else "moto-bulk-ci")
test_second_wave_money_invariants_hold_on_the_dynamodb_repository = MotoBulkMoneyMachine.TestCase


class MotoRoutesMoneyMachine(OnMoto, RoutesMoneyMachine):
    """Routes (Flex, stuck and late jobs, the standard fallback's top-ups) on the repository: its item moves,
    the chunk counts and the top-up transaction."""

    def __init__(self) -> None:
        self._start_moto()
        super().__init__()
        self.services = OnDynamo()
        for user in USERS:
            self.services.credits.adjust_balance(user, Decimal(100), "starter credits")


MotoRoutesMoneyMachine.TestCase.settings = settings.get_profile("moto-long" if PROFILE == "long" else "moto-bulk-ci")
test_route_money_invariants_hold_on_the_dynamodb_repository = MotoRoutesMoneyMachine.TestCase
