"""SQL for API keys (API.md §8): a church's keys, and the prefix lookup sign-in needs.

Only keyed hashes of secrets are stored. `uq_api_keys_prefix` finds a key's row from the
public prefix it carries, before the church is known. A revoked key keeps its row (with
`revoked_at`) so its prefix is never reused; lists show live keys only.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import api_keys

K = api_keys.c
PUBLIC = (K.id, K.church_id, K.name, K.prefix, K.scopes, K.rate_limit_per_minute,
          K.last_used_at, K.previous_expires_at, K.revoked_at, K.created_at)
# What sign-in compares: the public columns plus both hashes.
SECRET = (*PUBLIC, K.secret_hash, K.previous_secret_hash)
_LIVE = K.revoked_at.is_(None)
_MINE = sa.and_(K.church_id == sa.bindparam("church_id"), K.id == sa.bindparam("id"))

_INSERT = (sa.insert(api_keys)
           .values(church_id=sa.bindparam("church_id"), name=sa.bindparam("name"),
                   prefix=sa.bindparam("prefix"),
                   secret_hash=sa.bindparam("secret_hash", type_=BYTEA),
                   scopes=sa.bindparam("scopes", type_=ARRAY(sa.Text)),
                   rate_limit_per_minute=sa.bindparam("rate_limit_per_minute",
                                                      type_=sa.Integer))
           .returning(*PUBLIC))
_PREFIX_TAKEN = sa.select(K.id).where(K.prefix == sa.bindparam("prefix"))
_ORDER = NewestFirst(K.created_at, K.id)
_LIST = _ORDER.paged(sa.select(*PUBLIC).where(K.church_id == sa.bindparam("church_id"),
                                              _LIVE))
_GET = sa.select(*PUBLIC).where(_MINE)
_BY_PREFIX = sa.select(*SECRET).where(K.prefix == sa.bindparam("prefix"))
# The current secret becomes the previous one until `previous_expires_at`; a secret that
# was already previous (a second rotation inside the grace period) stops at once.
_ROTATE = (sa.update(api_keys).where(_MINE, _LIVE)
           .values(previous_secret_hash=K.secret_hash,
                   previous_expires_at=sa.func.now() + sa.bindparam("grace",
                                                                    type_=sa.Interval),
                   secret_hash=sa.bindparam("secret_hash", type_=BYTEA))
           .returning(*PUBLIC))
_REVOKE = (sa.update(api_keys).where(_MINE, _LIVE)
           .values(revoked_at=sa.func.now(), previous_secret_hash=None,
                   previous_expires_at=None)
           .returning(*PUBLIC))
_TOUCH = sa.update(api_keys).where(_MINE).values(last_used_at=sa.func.now())


async def prefix_taken(conn: Connection, prefix: str) -> bool:
    return await conn.fetch_one(_PREFIX_TAKEN, {"prefix": prefix}) is not None


async def insert_api_key(conn: Connection, values: dict[str, Any]) -> Row:
    row = await conn.fetch_one(_INSERT, values)
    assert row is not None
    return row


async def list_api_keys(conn: Connection, church_id: UUID, limit: int,
                        cursor: str | None) -> Page:
    """Live keys of the church, newest first."""
    return await fetch_page(conn, _ORDER, _LIST, {"church_id": church_id}, limit, cursor)


async def get_api_key(conn: Connection, church_id: UUID, key_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET, {"church_id": church_id, "id": key_id})


async def get_api_key_by_prefix(conn: Connection, prefix: str) -> Row | None:
    """Any church's key by its prefix, hashes included (sign-in only); revoked ones too."""
    return await conn.fetch_one(_BY_PREFIX, {"prefix": prefix})


async def rotate_api_key(conn: Connection, church_id: UUID, key_id: UUID,
                         secret_hash: bytes, grace: timedelta) -> Row | None:
    """The old secret keeps working for `grace` from now (database time); None when the
    church has no live key with this id."""
    return await conn.fetch_one(_ROTATE, {"church_id": church_id, "id": key_id,
                                          "secret_hash": secret_hash, "grace": grace})


async def revoke_api_key(conn: Connection, church_id: UUID, key_id: UUID) -> Row | None:
    """None when the church has no live key with this id."""
    return await conn.fetch_one(_REVOKE, {"church_id": church_id, "id": key_id})


async def touch_api_key(conn: Connection, church_id: UUID, key_id: UUID) -> None:
    await conn.execute(_TOUCH, {"church_id": church_id, "id": key_id})
