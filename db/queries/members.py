"""Members: single-row reads and writes, the keyset list, consent rows, key rotation scans.

Phone and email arrive here already encrypted (`phone_enc`, `email_enc`) with the keyed
`phone_hash`; this module never sees a plaintext phone. Bulk statements for the CSV import
live in `db/queries/member_import.py`.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BYTEA, aggregate_order_by
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import consent_ledger, group_memberships, groups, members

m, gm, g = members, group_memberships, groups
_UUID = PG_UUID(as_uuid=True)
_TS = sa.DateTime(timezone=True)

COLUMNS = (m.c.id, m.c.church_id, m.c.first_name, m.c.last_name, m.c.phone_enc, m.c.email_enc,
           m.c.opt_in_sms, m.c.opted_out_at, m.c.created_at, m.c.updated_at)

_INSERT = (pg_insert(m).values(
    church_id=sa.bindparam("church_id"), first_name=sa.bindparam("first_name"),
    last_name=sa.bindparam("last_name"), phone_enc=sa.bindparam("phone_enc"),
    email_enc=sa.bindparam("email_enc"), phone_hash=sa.bindparam("phone_hash"),
    phone_last4_hash=sa.bindparam("phone_last4_hash"),
    opt_in_sms=sa.bindparam("opt_in_sms"), opted_out_at=sa.bindparam("opted_out_at"))
    .on_conflict_do_nothing(index_elements=[m.c.church_id, m.c.phone_hash])
    .returning(*COLUMNS))

_GET = sa.select(*COLUMNS).where(m.c.church_id == sa.bindparam("church_id"),
                                 m.c.id == sa.bindparam("id"))
_GET_FOR_UPDATE = _GET.with_for_update()
_GET_BY_HASH = sa.select(*COLUMNS).where(m.c.church_id == sa.bindparam("church_id"),
                                         m.c.phone_hash == sa.bindparam("phone_hash"))

# A member's groups as a JSON array [{id, name}] sorted by name, in the same round trip.
_GROUPS_JSON = (
    sa.select(sa.func.coalesce(
        sa.func.json_agg(aggregate_order_by(
            sa.func.json_build_object("id", g.c.id, "name", g.c.name),
            sa.func.lower(g.c.name))),
        sa.text("'[]'::json")))
    .select_from(gm.join(g, sa.and_(g.c.church_id == gm.c.church_id, g.c.id == gm.c.group_id)))
    .where(gm.c.church_id == m.c.church_id, gm.c.member_id == m.c.id)
    .scalar_subquery().label("groups"))

_ORDER = NewestFirst(m.c.created_at, m.c.id)
_group_id = sa.bindparam("group_id", type_=_UUID)
_opted_in = sa.bindparam("opted_in", type_=sa.Boolean)
_hash = sa.bindparam("phone_hash", type_=BYTEA)
_last4 = sa.bindparam("last4_hash", type_=BYTEA)
_name_like = sa.bindparam("name_like", type_=sa.Text)
# Each filter is NULL (off) or a value; PostgreSQL folds the NULL ones away (parameters
# arrive as literals), so a phone or last-four search is an index lookup.
_FILTERS = (
    m.c.church_id == sa.bindparam("church_id"),
    sa.or_(_opted_in.is_(None), m.c.opt_in_sms == _opted_in),
    sa.or_(_hash.is_(None), m.c.phone_hash == _hash),
    sa.or_(sa.and_(_name_like.is_(None), _last4.is_(None)),
           sa.func.lower(m.c.first_name + " " + m.c.last_name).like(_name_like),
           m.c.phone_last4_hash == _last4),
    sa.or_(_group_id.is_(None), sa.exists().where(
        gm.c.church_id == m.c.church_id, gm.c.group_id == _group_id,
        gm.c.member_id == m.c.id)),
)
_LIST = _ORDER.paged(sa.select(*COLUMNS, _GROUPS_JSON).where(*_FILTERS))
_COUNT = sa.select(sa.func.count()).select_from(m).where(*_FILTERS)

# Rows written before the last-four hash existed (`ywm index-phones`), in key order.
_MISSING_LAST4 = (sa.select(m.c.church_id, m.c.id, m.c.phone_enc)
                  .where(m.c.phone_last4_hash.is_(None),
                         sa.tuple_(m.c.church_id, m.c.id)
                         > sa.tuple_(sa.bindparam("after_church", type_=_UUID),
                                     sa.bindparam("after_id", type_=_UUID)))
                  .order_by(m.c.church_id, m.c.id)
                  .limit(sa.bindparam("limit"))
                  .with_for_update(skip_locked=True))
_SET_LAST4 = sa.text(
    "UPDATE members AS m SET phone_last4_hash = t.h "
    "FROM unnest(CAST(:church_ids AS uuid[]), CAST(:ids AS uuid[]), CAST(:hashes AS bytea[])) "
    "AS t(c, id, h) WHERE m.church_id = t.c AND m.id = t.id")

_UPDATE = (sa.update(m).where(m.c.church_id == sa.bindparam("church_id"),
                              m.c.id == sa.bindparam("id"))
           .values(first_name=sa.bindparam("first_name"), last_name=sa.bindparam("last_name"),
                   phone_enc=sa.bindparam("phone_enc"), email_enc=sa.bindparam("email_enc"),
                   phone_hash=sa.bindparam("phone_hash"),
                   phone_last4_hash=sa.bindparam("phone_last4_hash"),
                   opt_in_sms=sa.bindparam("opt_in_sms"),
                   opted_out_at=sa.bindparam("opted_out_at", type_=_TS),
                   updated_at=sa.func.now())
           .returning(*COLUMNS))

_DELETE = (sa.delete(m).where(m.c.church_id == sa.bindparam("church_id"),
                              m.c.id == sa.bindparam("id")).returning(m.c.id))

# Changes only a member whose state differs, so the caller learns whether it changed.
_SET_OPT_IN = (sa.update(m).where(m.c.church_id == sa.bindparam("church_id"),
                                  m.c.id == sa.bindparam("id"),
                                  m.c.opt_in_sms != sa.bindparam("opt_in_sms"))
               .values(opt_in_sms=sa.bindparam("opt_in_sms"),
                       opted_out_at=sa.case((sa.bindparam("opt_in_sms"), None),
                                            else_=sa.func.now()),
                       updated_at=sa.func.now())
               .returning(*COLUMNS))

_GROUPS_OF = (sa.select(gm.c.member_id, g.c.id, g.c.name)
              .join(g, sa.and_(g.c.church_id == gm.c.church_id, g.c.id == gm.c.group_id))
              .where(gm.c.church_id == sa.bindparam("church_id"),
                     gm.c.member_id.in_(sa.bindparam("member_ids", expanding=True)))
              .order_by(gm.c.member_id, sa.func.lower(g.c.name)))

_GROUP_IDS_OF = sa.select(gm.c.group_id).where(gm.c.church_id == sa.bindparam("church_id"),
                                               gm.c.member_id == sa.bindparam("member_id"))

_COUNT_IN = sa.select(sa.func.count()).select_from(m).where(
    m.c.church_id == sa.bindparam("church_id"),
    m.c.id.in_(sa.bindparam("ids", expanding=True)))

_INSERT_CONSENT = sa.insert(consent_ledger).values(
    church_id=sa.bindparam("church_id"), member_id=sa.bindparam("member_id"),
    number_id=sa.bindparam("number_id", type_=_UUID), action=sa.bindparam("action"),
    source=sa.bindparam("source"), keyword=sa.bindparam("keyword", type_=sa.Text),
    detail=sa.bindparam("detail", type_=sa.Text))

# Key rotation: rows whose phone or email ciphertext is not under the newest key header,
# walked in (church_id, id) order across every church.
_header = sa.bindparam("header", type_=BYTEA)
_header_len = sa.bindparam("header_len", type_=sa.Integer)
_STALE = (sa.select(m.c.church_id, m.c.id, m.c.phone_enc, m.c.email_enc)
          .where(sa.tuple_(m.c.church_id, m.c.id)
                 > sa.tuple_(sa.bindparam("after_church", type_=_UUID),
                             sa.bindparam("after_id", type_=_UUID)),
                 sa.or_(sa.func.substring(m.c.phone_enc, 1, _header_len) != _header,
                        sa.and_(m.c.email_enc.is_not(None),
                                sa.func.substring(m.c.email_enc, 1, _header_len) != _header)))
          .order_by(m.c.church_id, m.c.id)
          .limit(sa.bindparam("limit"))
          .with_for_update(skip_locked=True))
_REWRITE = (sa.update(m).where(m.c.church_id == sa.bindparam("church_id"),
                               m.c.id == sa.bindparam("id"))
            .values(phone_enc=sa.bindparam("phone_enc"), email_enc=sa.bindparam("email_enc")))
_COUNT_STALE = sa.select(sa.func.count()).select_from(m).where(
    sa.or_(sa.func.substring(m.c.phone_enc, 1, _header_len) != _header,
           sa.and_(m.c.email_enc.is_not(None),
                   sa.func.substring(m.c.email_enc, 1, _header_len) != _header)))

ZERO_UUID = UUID(int=0)


async def insert_member(conn: Connection, values: dict[str, Any]) -> Row | None:
    """Insert; None when the church already has a member with this phone hash."""
    return await conn.fetch_one(_INSERT, values)


async def get_member(conn: Connection, church_id: UUID, member_id: UUID,
                     for_update: bool = False) -> Row | None:
    stmt = _GET_FOR_UPDATE if for_update else _GET
    return await conn.fetch_one(stmt, {"church_id": church_id, "id": member_id})


async def get_member_by_hash(conn: Connection, church_id: UUID, phone_hash: bytes
                             ) -> Row | None:
    return await conn.fetch_one(_GET_BY_HASH, {"church_id": church_id, "phone_hash": phone_hash})


def _filters(church_id: UUID, name_like: str | None, phone_hash: bytes | None,
             last4_hash: bytes | None, group_id: UUID | None, opted_in: bool | None
             ) -> dict[str, Any]:
    return {"church_id": church_id, "name_like": name_like, "phone_hash": phone_hash,
            "last4_hash": last4_hash, "group_id": group_id, "opted_in": opted_in}


async def list_members(conn: Connection, church_id: UUID, limit: int,
                       cursor: str | None = None,
                       name_like: str | None = None, phone_hash: bytes | None = None,
                       last4_hash: bytes | None = None,
                       group_id: UUID | None = None, opted_in: bool | None = None
                       ) -> Page:
    """Newest first, with `groups` ([{id, name}]); `name_like` is a LIKE pattern over
    lower('first last'); with `last4_hash` too, either one matches."""
    return await fetch_page(conn, _ORDER, _LIST, _filters(
        church_id, name_like, phone_hash, last4_hash, group_id, opted_in), limit, cursor)


async def count_members(conn: Connection, church_id: UUID,
                        name_like: str | None = None, phone_hash: bytes | None = None,
                        last4_hash: bytes | None = None,
                        group_id: UUID | None = None, opted_in: bool | None = None) -> int:
    """How many members `list_members` would page through with these filters."""
    return int(await conn.fetch_val(_COUNT, _filters(
        church_id, name_like, phone_hash, last4_hash, group_id, opted_in)))


async def list_missing_last4(conn: Connection, after: tuple[UUID, UUID] | None, limit: int
                             ) -> list[Row]:
    """Rows `{church_id, id, phone_enc}` without a last-four hash; locks them."""
    after_church, after_id = after or (ZERO_UUID, ZERO_UUID)
    return await conn.fetch_all(_MISSING_LAST4, {"after_church": after_church,
                                                 "after_id": after_id, "limit": limit})


async def set_last4_hashes(conn: Connection, rows: list[tuple[UUID, UUID, bytes]]) -> int:
    """Store `(church_id, id, phone_last4_hash)` for each row."""
    if not rows:
        return 0
    return await conn.execute(_SET_LAST4, {"church_ids": [r[0] for r in rows],
                                           "ids": [r[1] for r in rows],
                                           "hashes": [r[2] for r in rows]})


async def update_member(conn: Connection, values: dict[str, Any]) -> Row | None:
    return await conn.fetch_one(_UPDATE, values)


async def delete_member(conn: Connection, church_id: UUID, member_id: UUID) -> bool:
    return await conn.fetch_one(_DELETE, {"church_id": church_id, "id": member_id}) is not None


async def set_opt_in(conn: Connection, church_id: UUID, member_id: UUID, opted_in: bool
                     ) -> Row | None:
    """Flip opt-in; None when the member is missing or already in that state."""
    return await conn.fetch_one(_SET_OPT_IN, {"church_id": church_id, "id": member_id,
                                              "opt_in_sms": opted_in})


async def list_groups_of_members(conn: Connection, church_id: UUID, member_ids: list[UUID]
                                 ) -> list[Row]:
    """Rows `{member_id, id, name}` for each group of each member."""
    if not member_ids:
        return []
    return await conn.fetch_all(_GROUPS_OF, {"church_id": church_id, "member_ids": member_ids})


async def list_group_ids_of_member(conn: Connection, church_id: UUID, member_id: UUID
                                   ) -> list[UUID]:
    rows = await conn.fetch_all(_GROUP_IDS_OF, {"church_id": church_id, "member_id": member_id})
    return [row["group_id"] for row in rows]


async def count_members_in(conn: Connection, church_id: UUID, member_ids: list[UUID]) -> int:
    if not member_ids:
        return 0
    return int(await conn.fetch_val(_COUNT_IN, {"church_id": church_id, "ids": member_ids}))


async def insert_consent(conn: Connection, church_id: UUID, member_id: UUID, action: str,
                         source: str, keyword: str | None = None,
                         number_id: UUID | None = None, detail: str | None = None) -> None:
    await conn.execute(_INSERT_CONSENT, {
        "church_id": church_id, "member_id": member_id, "action": action, "source": source,
        "keyword": keyword, "number_id": number_id, "detail": detail})


async def list_stale_ciphertexts(conn: Connection, header: bytes, after: tuple[UUID, UUID] | None,
                                 limit: int) -> list[Row]:
    """Rows not (fully) under the key whose ciphertext header is `header`; locks them."""
    after_church, after_id = after or (ZERO_UUID, ZERO_UUID)
    return await conn.fetch_all(_STALE, {"header": header, "header_len": len(header),
                                         "after_church": after_church, "after_id": after_id,
                                         "limit": limit})


async def rewrite_ciphertexts(conn: Connection, church_id: UUID, member_id: UUID,
                              phone_enc: bytes, email_enc: bytes | None) -> None:
    await conn.execute(_REWRITE, {"church_id": church_id, "id": member_id,
                                  "phone_enc": phone_enc, "email_enc": email_enc})


async def count_stale_ciphertexts(conn: Connection, header: bytes) -> int:
    return int(await conn.fetch_val(_COUNT_STALE, {"header": header,
                                                   "header_len": len(header)}))
