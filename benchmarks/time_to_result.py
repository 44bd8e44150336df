"""Time to result, simulated: the real use cases (create, submit, the poller's tick with its reroutes and
the dispatcher, collect, the Flex worker) over the in-memory fakes of tests/fakes, on a virtual clock (no
sleeping).

1,000 batches (BENCH_SIM_BATCHES) of 1-500 items arrive over a week (a Poisson process). A Gemini batch
job takes a lognormal time (median 40 minutes, sigma 0.6), 80 % of it queued in PENDING; 2 % of jobs are
stuck: PENDING for 24 to 47 hours before they run. A Flex call takes 1-15 minutes and is shed (a 503 after
5 seconds, RetryInfo 30 s) one time in ten; at most FLEX_MAX_CONCURRENCY calls are in flight, the rest
wait in the queue; a standard call takes 10-60 seconds, at most STANDARD_MAX_CONCURRENCY in flight on its
own queue. The poller ticks every minute.

Policies: `batch`, `auto`, `auto` with a deadline 1 hour after create, and the same with `fallback:
"standard"`, each for a model Flex serves and for one it does not (the same text model with the catalog's
`flex.served` turned off: every path works either way). Per policy: p50/p95/p99 time from create to the
batch's end (and `auto`'s p95 over batches of at most 100 items), the share of deadlines met, and the
credits paid per image over the batch price.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

BATCHES = int(os.environ.get("BENCH_SIM_BATCHES", "1000"))
SEED = int(os.environ.get("BENCH_SIM_SEED", "26"))
# The arrival rate is what loads Flex: a smaller run keeps it (BENCH_SIM_BATCHES=200 arrive over 1.4 days).
WINDOW = 7 * 24 * 3600 * BATCHES / 1000
TICK = 60.0
MEDIAN_TURNAROUND, SIGMA, PENDING_SHARE = 40 * 60, 0.6, 0.8
STUCK_SHARE, STUCK_HOURS = 0.02, (24, 47)
FLEX_LATENCY, SHED_SHARE, SHED_AFTER, SHED_RETRY = (60, 900), 0.10, 5, 30
STANDARD_LATENCY = (10, 60)
DEADLINE = 3600
START = datetime(2026, 12, 7, tzinfo=UTC)

POLICIES = (
    ("batch", "batch", None, False),
    ("auto", "auto", None, False),
    ("auto + deadline 1 h", "auto", DEADLINE, False),
    ("auto + deadline 1 h + standard fallback", "auto", DEADLINE, True),
)


@dataclass(order=True)
class Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False, default=None)


@dataclass
class Outcome:
    items: int
    seconds: float
    deadline_met: bool | None
    kept: Decimal
    successes: int
    unit_price: Decimal


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.seconds)


def _job_state(now: float, start: float, finish: float, *, cancelled: bool) -> str:
    if cancelled:
        return "JOB_STATE_CANCELLED"
    if now < start:
        return "JOB_STATE_PENDING"
    return "JOB_STATE_RUNNING" if now < finish else "JOB_STATE_SUCCEEDED"


def _sim_gemini(clock: Clock, rng: random.Random) -> Any:
    from batchgen.domain.gemini_jobs import JobNotFound, JobView
    from tests.fakes.gemini import FakeGemini

    text = {"candidates": [{"content": {"parts": [{"text": "an answer"}]}, "finishReason": "STOP"}]}

    class SimGemini(FakeGemini):
        """Batch jobs that run on the virtual clock; synchronous calls answered at once (their latency and
        shedding are the scheduler's, which runs the call when its time has come)."""

        def __init__(self) -> None:
            super().__init__()
            self.timeline: dict[str, tuple[float, float, list[str]]] = {}  # name -> (start, finish, keys)
            self.cancelled_at: dict[str, float] = {}
            self.stuck = 0

        def create_job(
            self, model: str, source: str | list[dict[str, Any]], display_name: str, webhook: Any = None
        ) -> JobView:
            view = super().create_job(model, source, display_name, webhook)
            lines = self.files.get(source, []) if isinstance(source, str) else source
            keys = [line.get("key") or line.get("metadata", {}).get("key") for line in lines]
            if rng.random() < STUCK_SHARE:
                self.stuck += 1
                start = clock.seconds + rng.uniform(*STUCK_HOURS) * 3600
                finish = start + MEDIAN_TURNAROUND * (1 - PENDING_SHARE)
            else:
                turnaround = MEDIAN_TURNAROUND * math.exp(rng.gauss(0, SIGMA))
                start, finish = clock.seconds + turnaround * PENDING_SHARE, clock.seconds + turnaround
            self.timeline[view.name] = (start, finish, [key for key in keys if key])
            return view

        def get_job(self, name: str) -> JobView:
            if name not in self.timeline:
                raise JobNotFound(name)
            start, finish, keys = self.timeline[name]
            state = _job_state(clock.seconds, start, finish, cancelled=name in self.cancelled_at)
            if state == "JOB_STATE_SUCCEEDED":
                if not self.jobs[name].results:
                    self.jobs[name].results = [(key, {"response": text}) for key in keys]
            return JobView(
                name,
                self.jobs[name].view.display_name,
                state,
                "files/out" if state.endswith("SUCCEEDED") else None,
                None,
            )

        def generate_content(
            self,
            model: str,
            contents: list[dict[str, Any]],
            config: dict[str, Any],
            timeout_seconds: float,
            service_tier: str | None = None,
        ) -> Any:
            scripted = self.generate_script.pop(0)  # the scheduler's answer for this call
            if isinstance(scripted, Exception):
                raise scripted
            return scripted

        def cancel_job(self, name: str) -> None:
            super().cancel_job(name)
            if name in self.timeline and clock.seconds < self.timeline[name][1]:
                self.cancelled_at.setdefault(name, clock.seconds)

    return SimGemini()


class Simulation:
    """One policy's run: arrivals, the queues' consumers, the Flex worker's pool, the poller's tick."""

    def __init__(self, tier: str, deadline: int | None, fallback: bool, arrivals: list[tuple[float, int]]) -> None:
        from batchgen.config import get_settings
        from tests.fakes import FakeServices

        # One random stream per source of chance, so that a policy's choices do not reshuffle the draws of
        # another source (policies compare on the same job turnarounds and call latencies).
        self.rng = random.Random(SEED)
        self.job_rng = random.Random(SEED + 1)
        self.shed_rng = random.Random(SEED + 2)
        self.clock = Clock()
        self.services = FakeServices(gemini=_sim_gemini(self.clock, self.job_rng))
        self.services.queues.flex_backlog = self.flex_backlog  # type: ignore[method-assign]
        self.services.store.adjust_balance("sim", Decimal(10_000_000), "grant")
        self.tier, self.deadline, self.fallback = tier, deadline, fallback
        self.arrivals = arrivals
        self.events: list[Event] = []
        self.seq = 0
        # The Flex queue and the standard fallback's queue, each with its worker's pool of calls:
        # (visible at, seq, message) waiting, calls in flight, calls in flight at most.
        self.waiting: dict[str, list[tuple[float, int, Any]]] = {"flex": [], "standard": []}
        self.in_flight = {"flex": 0, "standard": 0}
        settings = get_settings()
        self.caps = {"flex": settings.flex_max_concurrency, "standard": settings.standard_max_concurrency}
        self.created: dict[str, float] = {}
        self.open: set[str] = set()  # created and not ended yet
        self.outcomes: dict[str, Outcome] = {}
        self.wake_at: dict[str, float | None] = {"flex": None, "standard": None}  # each queue's one wake-up
        self.calls = {"flex": 0, "shed": 0, "standard": 0, "dropped": 0}

    def flex_backlog(self) -> int:
        """What SQS would count on the Flex queue: calls waiting (or delayed) and in flight."""
        return len(self.waiting["flex"]) + self.in_flight["flex"]

    def push(self, at: float, kind: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, Event(at, self.seq, kind, payload))

    def run(self) -> list[Outcome]:
        for at, count in self.arrivals:
            self.push(at, "arrive", count)
        self.push(TICK, "tick")
        while self.events:
            event = heapq.heappop(self.events)
            self.clock.seconds = event.at
            getattr(self, f"_{event.kind}")(event.payload)
            self._consume()
            self._start_calls()
            if event.kind == "tick" and (len(self.outcomes) < len(self.arrivals)):
                self.push(event.at + TICK, "tick")
        return list(self.outcomes.values())

    # --- what happens ---------------------------------------------------------------------------------
    def _arrive(self, count: int) -> None:
        from batchgen.domain import ids
        from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
        from batchgen.usecases.pipeline import create

        deadline = ids.iso(self.clock.now() + timedelta(seconds=self.deadline)) if self.deadline else None
        draft = BatchDraft(
            batch_type="text",
            requests=[RequestDraft(None, f"prompt {n}", None) for n in range(count)],
            max_requests=500,
            tier=self.tier,
            deadline=deadline,
            fallback="standard" if self.fallback else None,
        )
        created = create.create_batch(self.services, Principal("sim"), draft)
        self.created[created.batch.batchId] = self.clock.seconds
        self.open.add(created.batch.batchId)

    def _tick(self, _payload: Any) -> None:
        from batchgen.usecases.pipeline import poll

        poll.poll_active_batches(self.services)
        self._record_ends()

    def _call_done(self, payload: tuple[Any, bool]) -> None:
        from batchgen.domain.errors import TransientError
        from batchgen.usecases.routing import flex

        message, shed = payload
        self.in_flight[message.tier] -= 1
        gemini = self.services.gemini
        text = {"candidates": [{"content": {"parts": [{"text": "an answer"}]}, "finishReason": "STOP"}]}
        gemini.generate_script = [TransientError("503 UNAVAILABLE", retry_after_seconds=SHED_RETRY) if shed else text]
        try:
            flex.generate_item(self.services, message)
        finally:
            gemini.generate_script = []
        self._record_ends()

    # --- the queues -------------------------------------------------------------------------------------
    def _consume(self) -> None:
        """Submit, collect and the Flex queue's arrivals, as their consumers take them (at once)."""
        from batchgen.models.messages import CancelJob, DeleteJob, SubmitJob
        from batchgen.usecases.pipeline import collect, submit

        queues = self.services.queues
        while queues.submit or queues.collect or queues.generate:
            while queues.submit:
                message, delay = queues.submit.pop(0)
                if delay:  # a comeback after another attempt's lease: later
                    self.push(self.clock.seconds + delay, "redeliver", message)
                elif isinstance(message, SubmitJob):
                    submit.submit_batch(self.services, message.batchId, message.chunk)
                elif isinstance(message, CancelJob | DeleteJob):
                    submit.clean_up_job(
                        self.services,
                        message.batchId,
                        message.jobName,
                        message.inputFile,
                        delete=isinstance(message, DeleteJob),
                        chunk=getattr(message, "chunk", 0),
                    )
            while queues.collect:
                message = queues.collect.pop(0)
                collect.collect_batch(self.services, message.batchId, message.chunk)
            for message, delay in queues.generate:
                self.seq += 1
                heapq.heappush(self.waiting[message.tier], (self.clock.seconds + delay, self.seq, message))
            queues.generate.clear()
        queues.uploads.clear()  # text batches: nothing to upload
        self._record_ends()

    def _redeliver(self, message: Any) -> None:
        self.services.queues.submit.append((message, 0))

    def _start_calls(self) -> None:
        """Each worker's pool: calls start while fewer than its cap are in flight (FLEX_MAX_CONCURRENCY for
        Flex, STANDARD_MAX_CONCURRENCY for the fallback's standard calls, on their own queue)."""
        from batchgen.usecases.routing import flex

        for tier, waiting in self.waiting.items():
            while waiting and self.in_flight[tier] < self.caps[tier]:
                visible, _seq, message = waiting[0]
                if visible > self.clock.seconds:
                    wake = self.wake_at[tier]
                    if wake is None or wake > visible:
                        self.wake_at[tier] = visible
                        self.push(visible, "wake", tier)
                    break
                heapq.heappop(waiting)
                if flex.current(self.services, message) is None:
                    # The worker drops a message that is no longer its item's (a copy, a moved or ended
                    # item) in milliseconds, without calling Gemini: it holds no place in the pool.
                    self.calls["dropped"] += flex.generate_item(self.services, message) == "dropped"
                    continue
                self.in_flight[tier] += 1
                if tier == "standard":
                    self.calls["standard"] += 1
                    latency = self.rng.uniform(*STANDARD_LATENCY)
                    self.push(self.clock.seconds + latency, "call_done", (message, False))
                    continue
                self.calls["flex"] += 1
                shed = self.shed_rng.random() < SHED_SHARE
                self.calls["shed"] += shed
                latency = SHED_AFTER if shed else self.rng.uniform(*FLEX_LATENCY)
                self.push(self.clock.seconds + latency, "call_done", (message, shed))

    def _wake(self, tier: str) -> None:
        self.wake_at[tier] = None

    def _record_ends(self) -> None:
        from batchgen.domain import ids, routing
        from batchgen.domain.states import ItemStatus, is_terminal

        store = self.services.store
        for batch_id in list(self.open):
            batch = store.batches[batch_id]
            if not is_terminal(batch.status):
                continue
            self.open.discard(batch_id)
            created = self.created[batch_id]
            ended = (ids.parse_iso(batch.completedAt or batch.updatedAt) - START).total_seconds()
            items = store.items[batch_id]
            successes = [item for item in items if item.status is ItemStatus.SUCCESS]
            kept = sum((routing.item_charge(batch.unitPrice, item) for item in successes), Decimal(0))
            met = ended - created <= self.deadline if self.deadline else None
            self.outcomes[batch_id] = Outcome(len(items), ended - created, met, kept, len(successes), batch.unitPrice)
        return None


@contextmanager
def _environment(served: bool) -> Iterator[None]:
    """The catalog with the text model served by Flex or not, and the virtual clock in `ids`."""
    import batchgen
    from batchgen.config import reset_caches
    from batchgen.domain import ids

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as folder:
        raw = json.loads((Path(batchgen.__file__).parent / "catalog.json").read_text(encoding="utf-8"))
        for spec in raw["models"].values():
            spec["flex"]["served"] = served and spec["kind"] == "text"
        path = Path(folder) / "catalog.json"
        path.write_text(json.dumps(raw), encoding="utf-8")
        os.environ["CATALOG_PATH"] = str(path)
        reset_caches()
        real_now = ids.utc_now
        try:
            yield
        finally:
            ids.utc_now = real_now  # type: ignore[assignment]
            os.environ.clear()
            os.environ.update(saved)
            reset_caches()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def simulate(
    tier: str, deadline: int | None, fallback: bool, served: bool, arrivals: list[tuple[float, int]]
) -> dict[str, Any]:
    from batchgen.domain import ids

    with _environment(served):
        simulation = Simulation(tier, deadline, fallback, arrivals)
        ids.utc_now = simulation.clock.now  # type: ignore[assignment]
        outcomes = simulation.run()
    seconds = [outcome.seconds for outcome in outcomes]
    small = [outcome.seconds for outcome in outcomes if outcome.items <= 100]
    met = [outcome.deadline_met for outcome in outcomes if outcome.deadline_met is not None]
    images = sum(outcome.successes for outcome in outcomes)
    kept = sum((outcome.kept for outcome in outcomes), Decimal(0))
    unit = outcomes[0].unit_price if outcomes else Decimal(1)
    return {
        "batches": len(outcomes),
        "p50": _percentile(seconds, 0.50),
        "p95": _percentile(seconds, 0.95),
        "p99": _percentile(seconds, 0.99),
        "p95_small": _percentile(small, 0.95),
        "met": (sum(met) / len(met)) if met else None,
        "price": float(kept / images / unit) if images else float("nan"),
        "calls": dict(simulation.calls),
        "stuck": simulation.services.gemini.stuck,
    }


def run() -> None:
    rng = random.Random(SEED)
    moments = sorted(rng.uniform(0, WINDOW) for _ in range(BATCHES))
    arrivals = [(moment, rng.randint(1, 500)) for moment in moments]
    items = sum(count for _, count in arrivals)
    days = WINDOW / 86400
    print(
        f"== Time to result: {BATCHES:,} batches of 1-500 items ({items:,} in all) over {days:.1f} days, "
        "virtual clock =="
    )
    print(
        "   Batch API lognormal (median 40 min, sigma 0.6), 2 % of jobs stuck 24-47 h; Flex 1-15 min, 10 % shed; "
        "text batches, `served` = the catalog's Flex reading of the model"
    )
    print(
        f"   {'policy':<42} {'served':<6} {'p50':>8} {'p95':>8} {'p99':>8} {'p95 <=100':>10} "
        f"{'deadlines':>10} {'x price':>8}"
    )
    for name, tier, deadline, fallback in POLICIES:
        for served in (True, False):
            found = simulate(tier, deadline, fallback, served, arrivals)
            met = f"{found['met']:.1%}" if found["met"] is not None else "-"
            print(
                f"   {name:<42} {'yes' if served else 'no':<6} {_span(found['p50']):>8} {_span(found['p95']):>8} "
                f"{_span(found['p99']):>8} {_span(found['p95_small']):>10} {met:>10} {found['price']:>8.3f}"
            )
    print(
        "   Targets: auto p95 <= 20 min for batches of <= 100 items at exactly the batch price (x 1.000); with a "
        "1 h deadline and the standard fallback, 100 % of deadlines met at <= 1.1x the batch price"
    )


if __name__ == "__main__":
    run()
