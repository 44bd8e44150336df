"""The time-to-result simulation of `make bench` runs the real use cases: a small run of it, so that a
change of a port or a use case cannot leave the benchmark broken until someone runs it."""

from __future__ import annotations

from benchmarks import time_to_result

ARRIVALS = [(0.0, 3), (120.0, 150), (600.0, 40)]  # seconds after the start, items


def test_a_deadline_with_the_standard_fallback_is_met_by_every_batch_at_no_less_than_the_batch_price() -> None:
    found = time_to_result.simulate("auto", 3600, True, True, ARRIVALS)
    assert found["batches"] == len(ARRIVALS)
    assert found["met"] == 1.0 and found["p99"] <= 3600
    assert 1.0 <= found["price"] <= 2.0  # the standard tier costs twice the batch price at most
    assert found["calls"]["flex"] >= 3  # the small batch went to Flex


def test_the_batch_tier_never_calls_flex_and_costs_exactly_the_batch_price() -> None:
    found = time_to_result.simulate("batch", None, False, True, ARRIVALS)
    assert found["batches"] == len(ARRIVALS) and found["met"] is None
    assert found["price"] == 1.0 and found["calls"]["flex"] == found["calls"]["standard"] == 0
