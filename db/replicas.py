"""Read replicas: which pool serves a read that tolerates staleness.

`ReadPools` holds the primary's pool and one pool per streaming replica
(`YWM_DATABASE_REPLICA_URLS`). `reader(min_lsn)` hands out a replica that is in rotation
and, when the caller wrote recently, has replayed the primary's WAL past `min_lsn` (the
position recorded after that write, server/services/reads.py); otherwise the primary.

In rotation means: the last check answered, and the replica is at most `max_lag` seconds
behind. Lag is measured in WAL, not with `pg_last_xact_replay_timestamp()` (which reads 0
on a replica that stopped receiving while the primary is busy, and hours after an idle
night): every `CHECK_SECONDS` the watcher samples the primary's `pg_current_wal_lsn()` and
each replica's `pg_last_wal_replay_lsn()`; a replica that has not replayed what the primary
had written at time t is at least now - t behind (for the oldest such sample, at most
`HISTORY_SECONDS` back). A replica that stops answering, or fails a read, is out at once;
the next check that succeeds brings it back.

A read never fails because of a replica: `ReplicaReader` runs each statement on the
replica and, if the replica fails (connection refused or lost, shut down, a recovery
conflict), marks it down and runs that statement and the rest of the block on the primary.
Reads on a replica run statement by statement (no BEGIN): `transaction()` on a reader is a
write's and goes to the primary.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import aiopg
import psycopg2
import psycopg2.extensions
from sqlalchemy.sql import ClauseElement

from db.engine import Connection, Database, Row

log = logging.getLogger("ywm.db.replicas")

# How often the watcher samples the primary's WAL position and probes each replica.
CHECK_SECONDS = 1.0
# A caller that wrote needs the replica's replay position; one read serves everyone for
# this long (a few ms: enough to share one probe between the requests of a burst).
REPLAY_CACHE_SECONDS = 0.005
# How far back primary positions are kept: the largest lag the watcher can tell apart.
HISTORY_SECONDS = 600.0
# A replica whose last successful check is older than this many check periods is out
# (the watcher is stuck or the loop is starved: its picture is no longer current).
STALE_CHECKS = 3
# How long one replica check may take before the replica counts as down.
PROBE_TIMEOUT_SECONDS = 2.0

PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text AS lsn"
REPLAY_POSITION = "SELECT pg_last_wal_replay_lsn()::text AS lsn"

# A replica that fails like this is down: run the statement on the primary instead.
# (QueryCanceledError is an OperationalError: a statement timeout stays a timeout.)
DOWN_ERRORS: tuple[type[BaseException], ...] = (
    psycopg2.OperationalError, psycopg2.InterfaceError, OSError, asyncio.TimeoutError)
# Cancelled by the replica's WAL replay (a recovery conflict): the replica is fine, this
# one read goes to the primary.
CONFLICT_ERRORS: tuple[type[BaseException], ...] = (psycopg2.extensions.TransactionRollbackError,)


def parse_lsn(text: str) -> int:
    """`16/B374D848` -> its 64-bit WAL position."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def replica_name(url: str) -> str:
    """host:port/database of a URL, without credentials: the metric label."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


def _fails_over(exc: BaseException) -> bool:
    if isinstance(exc, psycopg2.extensions.QueryCanceledError):
        return False
    return isinstance(exc, DOWN_ERRORS + CONFLICT_ERRORS)


@dataclass
class Replica:
    """One replica's pool and what the watcher last learned about it."""
    name: str
    db: Database
    up: bool = False
    replayed: int | None = None  # pg_last_wal_replay_lsn() at `replayed_at`
    replayed_at: float = float("-inf")  # monotonic
    checked_at: float = float("-inf")  # the last probe that answered
    lag: float | None = None  # seconds; None before the first check
    probing: asyncio.Future | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ReplicaStatus:
    name: str
    up: bool
    lag: float | None
    in_rotation: bool


class ReadPools:
    """The primary plus streaming replicas; `reader()` picks the pool for one read."""

    def __init__(self, primary: Database, replicas: Sequence[Replica], max_lag: float,
                 on_check: Callable[[list[ReplicaStatus]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.primary = primary
        self.replicas = list(replicas)
        self.max_lag = max_lag
        self.on_check = on_check
        self.clock = clock
        self._turn = itertools.count()
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._watcher: asyncio.Task | None = None

    @classmethod
    async def connect(cls, primary: Database, urls: Sequence[str], max_lag: float,
                      maxsize: int = 10,
                      on_check: Callable[[list[ReplicaStatus]], None] | None = None
                      ) -> "ReadPools":
        replicas = []
        for url in urls:
            # minsize 0: a replica that is down when the process starts delays nothing.
            pool = await aiopg.create_pool(url, minsize=0, maxsize=maxsize, timeout=30)
            replicas.append(Replica(replica_name(url), Database(pool)))
        return cls(primary, replicas, max_lag, on_check)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        for replica in self.replicas:
            await replica.db.close()

    # ---- choosing --------------------------------------------------------------------
    async def reader(self, min_lsn: int | None = None) -> Database:
        """A replica in rotation that has replayed past `min_lsn`, else the primary."""
        self.start()
        candidates = [r for r in self.replicas if self.in_rotation(r)]
        if candidates:
            first = next(self._turn) % len(candidates)
            for replica in candidates[first:] + candidates[:first]:
                if min_lsn is None or await self._has_replayed(replica, min_lsn):
                    return ReplicaReader(replica, self)
        return self.primary

    def in_rotation(self, replica: Replica) -> bool:
        fresh = self.clock() - replica.checked_at <= STALE_CHECKS * CHECK_SECONDS
        return (replica.up and fresh and replica.lag is not None
                and replica.lag <= self.max_lag)

    async def _has_replayed(self, replica: Replica, lsn: int) -> bool:
        if replica.replayed is not None and replica.replayed >= lsn:
            return True  # replay only moves forward
        if self.clock() - replica.replayed_at > REPLAY_CACHE_SECONDS:
            await self._probe(replica)
        return replica.up and replica.replayed is not None and replica.replayed >= lsn

    def mark_down(self, replica: Replica, exc: BaseException) -> None:
        if replica.up:
            log.warning("replica %s out of rotation: %s", replica.name, exc)
        replica.up = False

    # ---- positions -------------------------------------------------------------------
    async def primary_lsn(self) -> int:
        """The primary's WAL write position now: every commit so far is at or before it."""
        row = await self.primary.fetch_one(PRIMARY_POSITION)
        assert row is not None
        return parse_lsn(row["lsn"])

    async def _probe(self, replica: Replica) -> None:
        """Read the replica's replay position (one probe at a time per replica)."""
        if replica.probing is not None:
            await asyncio.shield(replica.probing)
            return
        replica.probing = asyncio.get_running_loop().create_future()
        try:
            row = await asyncio.wait_for(replica.db.fetch_one(REPLAY_POSITION),
                                         PROBE_TIMEOUT_SECONDS)
            if row is None or row["lsn"] is None:
                raise psycopg2.OperationalError("not a standby: pg_last_wal_replay_lsn() "
                                                "is NULL")
            now = self.clock()
            replica.replayed, replica.replayed_at = parse_lsn(row["lsn"]), now
            replica.checked_at = now
            if not replica.up:
                log.info("replica %s answers again", replica.name)
            replica.up = True
        except (*DOWN_ERRORS, psycopg2.Error) as exc:
            self.mark_down(replica, exc)
        finally:
            replica.probing.set_result(None)
            replica.probing = None

    # ---- the watcher -----------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher on this loop (the first read does it; idempotent)."""
        if self.replicas and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one check
                log.exception("replica check failed")
            await asyncio.sleep(CHECK_SECONDS)

    async def check(self) -> list[ReplicaStatus]:
        """Sample the primary, probe every replica, recompute lags, report them."""
        now = self.clock()
        try:
            self._samples.append((now, await self.primary_lsn()))
        except DOWN_ERRORS:
            log.warning("primary WAL position unavailable", exc_info=True)
        while len(self._samples) > 1 and self._samples[0][0] < now - HISTORY_SECONDS:
            self._samples.popleft()
        await asyncio.gather(*(self._probe(r) for r in self.replicas))
        for replica in self.replicas:
            replica.lag = self._lag(replica, self.clock())
        statuses = self.status()
        if self.on_check is not None:
            self.on_check(statuses)
        return statuses

    def _lag(self, replica: Replica, now: float) -> float | None:
        if replica.replayed is None or not self._samples:
            return None
        for sampled_at, lsn in self._samples:  # oldest first
            if lsn > replica.replayed:
                return max(0.0, now - sampled_at)
        return 0.0

    def status(self) -> list[ReplicaStatus]:
        return [ReplicaStatus(r.name, r.up, r.lag, self.in_rotation(r)) for r in self.replicas]


class ReplicaReader(Database):
    """A replica's pool as a `Database` for reads, falling back to the primary."""

    def __init__(self, replica: Replica, pools: ReadPools) -> None:
        super().__init__(replica.db.pool)
        self.replica = replica
        self.pools = pools

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        async with contextlib.AsyncExitStack() as stack:
            conn: Connection
            try:
                raw = await stack.enter_async_context(self.pool.acquire())
                conn = _ReplicaConnection(raw, self, stack)
            except BaseException as exc:
                if not _fails_over(exc):
                    raise
                self.pools.mark_down(self.replica, exc)
                conn = await stack.enter_async_context(self.pools.primary.acquire())
            yield conn

    def transaction(self) -> Any:
        return self.pools.primary.transaction()  # a transaction is a write's

    async def close(self) -> None:
        raise RuntimeError("a reader borrows its pool; ReadPools.close() closes it")


class _ReplicaConnection(Connection):
    """A replica connection whose statements move to the primary once the replica fails.

    The whole statement is retried, reading its rows included: a replica that dies just
    after answering closes the cursor before its rows are read ("cursor already closed")."""

    def __init__(self, raw: aiopg.Connection, reader: ReplicaReader,
                 stack: contextlib.AsyncExitStack) -> None:
        super().__init__(raw)
        self.reader = reader
        self.stack = stack
        self.fallback: Connection | None = None

    async def _either(self, operation: str, stmt: ClauseElement | str,
                      params: Mapping[str, Any] | None) -> Any:
        if self.fallback is None:
            try:
                return await getattr(super(), operation)(stmt, params)
            except BaseException as exc:
                if not _fails_over(exc):
                    raise
                if not isinstance(exc, CONFLICT_ERRORS):
                    self.reader.pools.mark_down(self.reader.replica, exc)
                self.fallback = await self.stack.enter_async_context(
                    self.reader.pools.primary.acquire())
        return await getattr(self.fallback, operation)(stmt, params)

    async def fetch_one(self, stmt: ClauseElement | str,
                        params: Mapping[str, Any] | None = None) -> Row | None:
        return await self._either("fetch_one", stmt, params)  # type: ignore[no-any-return]

    async def fetch_all(self, stmt: ClauseElement | str,
                        params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._either("fetch_all", stmt, params)  # type: ignore[no-any-return]

    async def execute(self, stmt: ClauseElement | str,
                      params: Mapping[str, Any] | None = None) -> int:
        return await self._either("execute", stmt, params)  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        yield self  # statement by statement on a replica (see the module docstring)
