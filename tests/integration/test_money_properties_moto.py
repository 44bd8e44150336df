"""The money invariants of tests/unit/test_money_properties.py with the DynamoDB repository on moto
(its conditional writes and transactions) instead of the in-memory store: fewer, slower examples."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.conftest import JWT_SECRET, reset_service_caches
from tests.unit.test_money_properties import PROFILE, MoneyMachine

settings.register_profile(
    "moto-ci", max_examples=12, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "moto-long", max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)


class MotoMoneyMachine(MoneyMachine):
    def __init__(self) -> None:
        from moto import mock_aws

        from batchgen.adapters.repository import get_repository
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
        self.services.store = get_repository()  # type: ignore[assignment]

    def _ledger(self) -> list:
        return [entry for user in ("u1", "u2") for entry in self.services.store.list_ledger(user, limit=100_000)]

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
