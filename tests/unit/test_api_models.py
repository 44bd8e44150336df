"""The value lists the OpenAPI document states are the service's own: a status, item status or batch type
added to the domain and not to the API models would be refused by the schema while the server has it."""

from __future__ import annotations

from typing import get_args

from batchgen.domain import pricing
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.api import BatchStatusName, BatchTypeName, HistoryTypeName, ItemStatusName


def test_the_list_filters_name_every_status_and_type_the_service_has() -> None:
    assert set(get_args(BatchStatusName)) == {status.value for status in BatchStatus}
    assert set(get_args(ItemStatusName)) == {status.value for status in ItemStatus}
    assert set(get_args(BatchTypeName)) == set(pricing.BATCH_TYPES)
    # the history filter takes a type as created and as listed (`batch-<type>`)
    assert set(get_args(HistoryTypeName)) == {*pricing.BATCH_TYPES, *(f"batch-{t}" for t in pricing.BATCH_TYPES)}
