"""The aiopg connection pool and the small connection wrapper every query module uses.

Queries in `db/queries/` take a `Connection` first and run SQLAlchemy Core statements
through `db.sql.to_sql`. Rows come back as plain dicts (RealDictCursor).

The connection keeps no session state, so it works behind PgBouncer in transaction mode
(docs/decisions.md, "PgBouncer: settings per transaction"): the statement timeout and UTC
are set with `SET LOCAL` in every transaction, never at connect time (PgBouncer refuses
libpq `options`, and a session `SET` would stay on a server connection that other clients
then share).
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Mapping

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


class Connection:
    """One checked-out connection; `transaction()` nests as a savepoint-free block."""

    def __init__(self, raw: aiopg.Connection) -> None:
        self.raw = raw
        self._in_transaction = False

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
            except BaseException:
                if not cur.closed:  # as aiopg's own Transaction: a cancelled query closes it
                    await cur.execute("ROLLBACK")
                raise
            await cur.execute("COMMIT")
        finally:
            self._in_transaction = False
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
