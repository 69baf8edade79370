"""Set-based statements for the CSV member import: one round trip per batch and step.

Arrays go in as typed parameters and come apart with `unnest`, so a batch of a thousand
rows is one INSERT, one UPDATE and one membership INSERT, whatever its size.
"""
from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row

_EXISTING = sa.text(
    "SELECT id, phone_hash, first_name, last_name, email_enc FROM members "
    "WHERE church_id = :church_id AND phone_hash = ANY(CAST(:hashes AS bytea[]))")

_INSERT = sa.text(
    "INSERT INTO members (church_id, first_name, last_name, phone_enc, email_enc, phone_hash, "
    "phone_last4_hash) "
    "SELECT :church_id, f, l, p, e, h, h4 FROM unnest(CAST(:firsts AS text[]), "
    "CAST(:lasts AS text[]), CAST(:phones AS bytea[]), CAST(:emails AS bytea[]), "
    "CAST(:hashes AS bytea[]), CAST(:last4s AS bytea[])) AS t(f, l, p, e, h, h4) "
    "ON CONFLICT (church_id, phone_hash) DO NOTHING RETURNING id, phone_hash")

# A NULL email in the batch means "not given": the stored email is kept.
_UPDATE = sa.text(
    "UPDATE members AS m SET first_name = t.f, last_name = t.l, "
    "email_enc = COALESCE(t.e, m.email_enc), updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:firsts AS text[]), CAST(:lasts AS text[]), "
    "CAST(:emails AS bytea[])) AS t(id, f, l, e) "
    "WHERE m.church_id = :church_id AND m.id = t.id")

_ADD_MEMBERSHIPS = sa.text(
    "INSERT INTO group_memberships (church_id, group_id, member_id) "
    "SELECT :church_id, g, m FROM unnest(CAST(:group_ids AS uuid[]), "
    "CAST(:member_ids AS uuid[])) AS t(g, m) "
    "ON CONFLICT DO NOTHING RETURNING group_id, member_id")

_GROUPS_OF = sa.text(
    "SELECT DISTINCT group_id FROM group_memberships "
    "WHERE church_id = :church_id AND member_id = ANY(CAST(:ids AS uuid[]))")


async def list_existing(conn: Connection, church_id: UUID, hashes: list[bytes]) -> list[Row]:
    return await conn.fetch_all(_EXISTING, {"church_id": church_id, "hashes": hashes})


async def insert_members(conn: Connection, church_id: UUID, firsts: list[str],
                         lasts: list[str], phones: list[bytes], emails: list[bytes | None],
                         hashes: list[bytes], last4s: list[bytes | None]) -> list[Row]:
    """Rows `{id, phone_hash}` actually inserted (a concurrent twin is skipped)."""
    if not hashes:
        return []
    return await conn.fetch_all(_INSERT, {"church_id": church_id, "firsts": firsts,
                                          "lasts": lasts, "phones": phones, "emails": emails,
                                          "hashes": hashes, "last4s": last4s})


async def update_members(conn: Connection, church_id: UUID, ids: list[UUID], firsts: list[str],
                         lasts: list[str], emails: list[bytes | None]) -> int:
    if not ids:
        return 0
    return await conn.execute(_UPDATE, {"church_id": church_id, "ids": ids, "firsts": firsts,
                                        "lasts": lasts, "emails": emails})


async def add_memberships(conn: Connection, church_id: UUID, group_ids: list[UUID],
                          member_ids: list[UUID]) -> list[Row]:
    """Rows `{group_id, member_id}` that were new."""
    if not group_ids:
        return []
    return await conn.fetch_all(_ADD_MEMBERSHIPS, {"church_id": church_id,
                                                   "group_ids": group_ids,
                                                   "member_ids": member_ids})


async def list_group_ids_of(conn: Connection, church_id: UUID, member_ids: list[UUID]
                            ) -> list[UUID]:
    if not member_ids:
        return []
    rows = await conn.fetch_all(_GROUPS_OF, {"church_id": church_id, "ids": member_ids})
    return [row["group_id"] for row in rows]
