"""Which waiting batch gets the next Gemini job slot: premium first, then the oldest; no user
holds more than the per-user share while another user's batch waits. Pure: the use case feeds it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PREMIUM = "premium"


@dataclass(frozen=True)
class Waiting:
    batch_id: str
    user_id: str
    tier: str | None
    created_at: str
    chunk: int = 0  # a chunked batch waits with each of its chunks, in chunk order


def priority(waiting: Waiting) -> tuple[int, str, str, int]:
    return (0 if waiting.tier == PREMIUM else 1, waiting.created_at, waiting.batch_id, waiting.chunk)


def queue_order(waiting: Iterable[Waiting], held: Counter[str], per_user: int) -> list[Waiting]:
    """Every waiting batch in the order slots go to them.

    In priority order, a batch whose user already holds `per_user` slots (counting those this order
    has handed out before it) steps behind every batch of a user under the share; when only such
    batches are left, priority decides again among them."""
    pending = sorted(waiting, key=priority)
    holding = Counter(held)
    order: list[Waiting] = []
    while pending:
        chosen = next((w for w in pending if holding[w.user_id] < per_user), pending[0])
        pending.remove(chosen)
        holding[chosen.user_id] += 1
        order.append(chosen)
    return order


def admitted(order: Sequence[Waiting], free_slots: int) -> list[Waiting]:
    """The batches the free slots go to now: the head of the queue."""
    return list(order[: max(0, free_slots)])


def position(order: Sequence[Waiting], batch_id: str) -> int | None:
    """1-based place of a waiting batch in the queue; None when it is not waiting."""
    return next((index + 1 for index, w in enumerate(order) if w.batch_id == batch_id), None)
