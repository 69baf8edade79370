"""Group commit for carrier webhooks (issue 11; the batching RapidPro's Courier does for
status writes).

A verified, parsed webhook joins the web process's open batch and waits. The batch closes
`carrier_batch_ms` after its first webhook or at `carrier_batch_size` webhooks; ONE
transaction applies it (server/services/inbound.py `apply_carrier_events`), and only after
the COMMIT is every request in it answered, so a 2xx still means "in PostgreSQL"
(ARCHITECTURE.md §5) and a process killed mid-batch loses nothing it answered.

While a batch commits the next one collects. At most `carrier_batch_commits` batches of a
process commit at once; a batch whose time is up while every commit slot is busy keeps
collecting until a slot frees (bigger batches under load, Nagle-style), and the webhooks
waiting in a process are bounded (`_room`), so memory cannot grow without limit: a
request beyond that waits for room before it joins.

A batch that fails with a deadlock or serialization failure is retried once. After any
other failure nothing of the batch is committed and no request in it is answered 2xx: its
events are applied again one transaction each (so one poisoned webhook, retried by its
carrier for hours, cannot fail every batch it joins), and each event that fails alone too
is answered 503 `unavailable` (API.md §2), so the carrier retries it; dedupe keeps the
retries exact.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import psycopg2
from psycopg2 import errorcodes
import redis.asyncio as aioredis

from db.engine import Database
from server.carriers.base import CarrierEvent, InboundText, StatusReceipt
from server.platform.errors import Unavailable
from server.platform.metrics import Metrics, describe
from server.platform.settings import Settings
from server.services import inbound
from server.services.followups import enqueue

log = logging.getLogger("ywm.webhook_batch")

# The batch did nothing, running it again may
# well succeed (two processes' batches locked the same rows in another order).
RETRYABLE_PGCODES = frozenset((errorcodes.DEADLOCK_DETECTED,
                               errorcodes.SERIALIZATION_FAILURE))
# Waiting webhooks per process, in batches: the open one, the committing ones, and one
# closed batch waiting for a slot.
ROOM_BATCHES = 2

BATCHES_METRIC = "ywm_carrier_webhook_batches_total"
BATCHED_METRIC = "ywm_carrier_webhook_batched_events_total"
describe(BATCHES_METRIC, "counter", "Carrier webhook batches by result (committed, retried "
         "after a deadlock/serialization failure, split after a failure, failed: 503).")
describe(BATCHED_METRIC, "counter", "Carrier webhooks committed in batches (divided by the "
         "committed batches: the mean batch size).")

Waiter = tuple[CarrierEvent, "asyncio.Future[tuple[str, UUID | None]]"]


class WebhookBatcher:
    """One per web process and event loop (`batcher_for`)."""

    def __init__(self, db: Database, redis: aioredis.Redis, settings: Settings,
                 metrics: Metrics | None = None) -> None:
        self.db, self.redis, self.settings = db, redis, settings
        self.metrics = metrics or Metrics()
        self.delay = max(0.0, settings.carrier_batch_ms) / 1000.0
        self.size = max(1, settings.carrier_batch_size)
        self.slots = max(1, settings.carrier_batch_commits)
        self._commits = asyncio.Semaphore(self.slots)
        self._room = asyncio.Semaphore(self.size * (self.slots + ROOM_BATCHES))
        self._open: list[Waiter] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = False  # the open batch's time is up; it waits for a commit slot
        self._busy = 0     # batches closed and not yet answered
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, event: CarrierEvent | None) -> str:
        """Apply one webhook's event with its batch; its outcome once committed (stored,
        duplicate, unknown_number, unmatched, held, ignored). Raises `Unavailable` when
        its batch could not be committed."""
        if not isinstance(event, (InboundText, StatusReceipt)):
            return "ignored"
        async with self._room:
            future: asyncio.Future[tuple[str, UUID | None]] = \
                asyncio.get_running_loop().create_future()
            self._open.append((event, future))
            if len(self._open) >= self.size:
                self._close()
            elif self._timer is None and not self._due:
                self._timer = asyncio.get_running_loop().call_later(self.delay, self._time_up)
            # Shielded: a carrier that hangs up does not take its event out of the batch.
            outcome, church_id = await asyncio.shield(future)
        await inbound.link_receipt_trace(self.redis, event, outcome, church_id)
        return outcome

    def _time_up(self) -> None:
        self._timer = None
        if self._busy >= self.slots:
            self._due = True  # keep collecting; the next finished commit closes it
            return
        self._close()

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = False
        batch, self._open = self._open, []
        if not batch:
            return
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[Waiter]) -> None:
        try:
            async with self._commits:
                await self._commit(batch)
        finally:
            self._busy -= 1
            if self._due and self._busy < self.slots:
                self._close()

    async def _commit(self, batch: list[Waiter]) -> None:
        events: list[CarrierEvent | None] = [event for event, _ in batch]
        try:
            applied = await self._apply(events)
        except Exception:  # noqa: BLE001 - answered 503 below; nothing was committed
            if len(batch) > 1:
                # One poisoned webhook must not fail its neighbours on every carrier retry:
                # apply each alone (dedupe makes this exact even if the COMMIT's answer was
                # lost), so only the events that fail on their own are answered 503.
                log.warning("carrier webhook batch failed; applying its %s events one by one",
                            len(batch), exc_info=True)
                self.metrics.inc(BATCHES_METRIC, result="split")
                for waiter in batch:
                    await self._commit([waiter])
                return
            log.error("carrier webhook failed; answering 503", exc_info=True)
            self.metrics.inc(BATCHES_METRIC, result="failed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(Unavailable())
            return
        self.metrics.inc(BATCHES_METRIC, result="committed")
        self.metrics.inc(BATCHED_METRIC, len(batch))
        await self._after_commit(applied)
        for (_, future), outcome, church_id in zip(batch, applied.outcomes, applied.churches):
            if not future.done():
                future.set_result((outcome, church_id))

    async def _apply(self, events: list[CarrierEvent | None]) -> inbound.BatchResult:
        """One transaction for the batch; once more after a deadlock/serialization failure."""
        for attempt in (1, 2):
            try:
                async with self.db.transaction() as conn:
                    return await inbound.apply_carrier_events(conn, self.settings, events)
            except psycopg2.Error as exc:
                if attempt == 2 or exc.pgcode not in RETRYABLE_PGCODES:
                    raise
                log.warning("carrier webhook batch retried after %s", exc.pgcode)
                self.metrics.inc(BATCHES_METRIC, result="retried")
        raise AssertionError("unreachable")

    async def _after_commit(self, applied: inbound.BatchResult) -> None:
        """Publish, announce progress, enqueue follow-ups. The batch is committed: a failure
        here is logged, never answered as an error (the log replays events, the reconciler
        re-finds queued replies)."""
        try:
            followups = await inbound.after_batch(self.db, self.redis, applied)
        except Exception:  # noqa: BLE001 - committed already; see the docstring
            log.warning("after-commit work of a webhook batch failed", exc_info=True)
            followups = applied.result.followups
        await enqueue(followups)


def batcher_for(deps: Any) -> WebhookBatcher:
    """The process's batcher, made on first use (on the loop that serves requests)."""
    batcher: WebhookBatcher | None = getattr(deps, "webhook_batcher", None)
    if batcher is None:
        batcher = WebhookBatcher(deps.db, deps.redis, deps.settings, deps.metrics)
        deps.webhook_batcher = batcher
    return batcher
