"""The aiopg connection pool and the small connection wrapper every query module uses.

Queries in `db/queries/` take a `Connection` first and run SQLAlchemy Core statements
through `db.sql.to_sql`. Rows come back as plain dicts (RealDictCursor).

The connection keeps no session state, so it works behind PgBouncer in transaction mode
(docs/decisions.md, "PgBouncer: settings per transaction"): the statement timeout and UTC
are set with `SET LOCAL` in every transaction, never at connect time (PgBouncer refuses
libpq `options`, and a session `SET` would stay on a server connection that other clients
then share).

Deferred writes. A transaction may buffer work with `deferred(key, flush)` (the event log
does: server/events/log.py); every buffer is written by its `flush(conn, items)` just
before COMMIT, or earlier by `await conn.flush()`. What it locks (the church row that
numbers events) is then held only for that write and the COMMIT. A transaction that
raises, or whose flush raises, rolls back and drops every buffer; none outlives its
transaction, so a pooled connection never carries one to the next user. Nesting is
savepoint-free: an inner `transaction()` block shares the outer one, so work an inner
block buffered stays buffered (like its statements) until the outer block ends.
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import aiopg
import psycopg2.extras
from sqlalchemy.sql import ClauseElement

from db.sql import to_sql

psycopg2.extras.register_uuid()

Row = dict[str, Any]
# A statement that runs longer than this is cancelled by PostgreSQL itself; aiopg's client
# timeout alone would leave it running on the server (LIBRARIES.md §2).
STATEMENT_TIMEOUT_MS = 15_000
# Sent in the same message as BEGIN, or ahead of a statement run outside `transaction()`:
# PostgreSQL runs a multi-statement message as one implicit transaction, so SET LOCAL
# covers that statement and costs no extra round trip.
LOCAL_SETTINGS = (f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}; "
                  "SET LOCAL timezone = 'UTC'")
BEGIN = f"BEGIN; {LOCAL_SETTINGS}"

Flush = Callable[["Connection", list[Any]], Awaitable[None]]


class Connection:
    """One checked-out connection; `transaction()` nests as a savepoint-free block and
    runs the deferred writes before its COMMIT."""

    def __init__(self, raw: aiopg.Connection) -> None:
        self.raw = raw
        self._in_transaction = False
        # key -> (its flush, the items buffered under it), in first-use order.
        self._deferred: dict[str, tuple[Flush, list[Any]]] = {}

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def deferred(self, key: str, flush: Flush) -> list[Any]:
        """The transaction's buffer for `key`: append to it; `flush(conn, items)` writes
        the items just before COMMIT (see the module docstring)."""
        if not self._in_transaction:
            raise RuntimeError("deferred writes need a transaction")
        entry = self._deferred.get(key)
        if entry is None:
            entry = self._deferred[key] = (flush, [])
        return entry[1]

    async def flush(self) -> None:
        """Write every buffer now (a caller that needs, say, an event id before COMMIT).
        A buffer is taken off before its flush runs: if the flush raises, the transaction
        must roll back, and nothing is written twice."""
        while self._deferred:
            key = next(iter(self._deferred))
            flush, items = self._deferred.pop(key)
            if items:
                await flush(self, items)

    async def _run(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None
                   ) -> Any:
        if isinstance(stmt, str):
            sql, values = stmt, dict(params or {})
        else:
            sql, values = to_sql(stmt, params)
        if not self._in_transaction:
            sql = f"{LOCAL_SETTINGS}; {sql}"
        cur = await self.raw.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        await cur.execute(sql, values)
        return cur

    async def fetch_one(self, stmt: ClauseElement | str,
                        params: Mapping[str, Any] | None = None) -> Row | None:
        cur = await self._run(stmt, params)
        try:
            row = await cur.fetchone()
            return dict(row) if row is not None else None
        finally:
            cur.close()

    async def fetch_all(self, stmt: ClauseElement | str,
                        params: Mapping[str, Any] | None = None) -> list[Row]:
        cur = await self._run(stmt, params)
        try:
            return [dict(row) for row in await cur.fetchall()]
        finally:
            cur.close()

    async def fetch_val(self, stmt: ClauseElement | str,
                        params: Mapping[str, Any] | None = None) -> Any:
        row = await self.fetch_one(stmt, params)
        return next(iter(row.values())) if row else None

    async def execute(self, stmt: ClauseElement | str,
                      params: Mapping[str, Any] | None = None) -> int:
        cur = await self._run(stmt, params)
        try:
            return int(cur.rowcount)
        finally:
            cur.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator["Connection"]:
        if self._in_transaction:
            yield self
            return
        cur = await self.raw.cursor()
        self._in_transaction = True
        try:
            await cur.execute(BEGIN)
            try:
                yield self
                await self.flush()  # last, so its locks last only until the COMMIT
            except BaseException:
                if not cur.closed:  # as aiopg's own Transaction: a cancelled query closes it
                    await cur.execute("ROLLBACK")
                raise
            await cur.execute("COMMIT")
        finally:
            self._in_transaction = False
            self._deferred.clear()
            cur.close()


class Database:
    """An aiopg pool created on the running loop; close it on shutdown."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, minsize: int = 1, maxsize: int = 10) -> "Database":
        # No `options=`: see the module docstring.
        pool = await aiopg.create_pool(dsn, minsize=minsize, maxsize=maxsize, timeout=30)
        return cls(pool)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as raw:
            yield Connection(raw)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.acquire() as conn, conn.transaction():
            yield conn

    async def fetch_one(self, stmt: ClauseElement | str,
                        params: Mapping[str, Any] | None = None) -> Row | None:
        async with self.acquire() as conn:
            return await conn.fetch_one(stmt, params)

    async def fetch_all(self, stmt: ClauseElement | str,
                        params: Mapping[str, Any] | None = None) -> list[Row]:
        async with self.acquire() as conn:
            return await conn.fetch_all(stmt, params)

    async def execute(self, stmt: ClauseElement | str,
                      params: Mapping[str, Any] | None = None) -> int:
        async with self.acquire() as conn:
            return await conn.execute(stmt, params)

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()
