"""The JWT `sub` never steers the Cloudinary public id (regressions)."""

from __future__ import annotations

import pytest

from batchgen.domain import ids
from batchgen.usecases.pipeline.upload import public_id

BATCH, ITEM = "batch_1700000000000_0123456789", "gen_1700000000000_0123456789_00"


@pytest.mark.parametrize("sub", ["../../other-user", "a/b?c#d", "x y", "", "é", ".", "_abc", "a" * 65, "u\ud800"])
def test_unsafe_subs_are_hashed_into_one_plain_segment(sub):
    segment = ids.path_segment(sub)
    assert segment.startswith("_") and len(segment) == 41
    assert all(ch.isalnum() or ch in "_-" for ch in segment)
    assert segment == ids.path_segment(sub)  # deterministic: a retried upload replaces its asset
    pid = public_id(sub, BATCH, ITEM)
    assert pid.split("/")[1:] == [segment, BATCH, ITEM]
    assert ".." not in pid and "?" not in pid and "#" not in pid


@pytest.mark.parametrize("sub", ["user-1", "3f1c2a9e-1111-4d2b-9c1f-0123456789ab", "alice_2"])
def test_plain_subs_stay_readable(sub):
    assert public_id(sub, BATCH, ITEM).split("/")[1] == sub


def test_distinct_subs_get_distinct_segments():
    subs = ["../../other-user", "../../other-user ", "a/b?c#d", "a/b?c#e", "other-user"]
    assert len({ids.path_segment(sub) for sub in subs}) == len(subs)
