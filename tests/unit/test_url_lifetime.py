"""How long a presigned URL may live: what was asked, never past its signing credentials (domain.links)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from batchgen import constants
from batchgen.domain.links import url_lifetime

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MARGIN = constants.URL_SIGNING_MARGIN_SECONDS


@pytest.mark.parametrize(
    ("credentials_left", "expected"),
    [
        (None, 3600),  # credentials that do not expire: as asked
        (7200, 3600),  # a longer session: as asked
        (3600, 3600 - MARGIN),  # a fresh one-hour session: its end, less the margin for signing
        (600, 600 - MARGIN),  # ten minutes left: ten minutes, not the hour the caller asked
        (MARGIN, 0),  # nothing usable left
        (-30, 0),  # already expired: never a negative lifetime
    ],
)
def test_a_url_never_outlives_its_signing_credentials(credentials_left: int | None, expected: int) -> None:
    expires = None if credentials_left is None else NOW + timedelta(seconds=credentials_left)
    assert url_lifetime(3600, expires, NOW) == expected
