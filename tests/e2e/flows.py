"""Helpers the end-to-end modules share: a user's balance, waiting for a batch to finish."""

from __future__ import annotations

import time
from decimal import Decimal


def balance(runtime, token: str) -> Decimal:
    response = runtime.request("GET", "/credits", token=token)
    assert response.status_code == 200, response.text
    return Decimal(str(response.json()["balance"]))


def wait_until_complete(runtime, token: str, batch_id: str, timeout: float = 45) -> dict:
    """Polls the status route like the seed-000 client does, until the batch is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        report = runtime.request("GET", f"/batch/status/{batch_id}", token=token).json()
        if report["isComplete"] or time.monotonic() > deadline:
            return report
        time.sleep(0.5)
