"""Members: create, read, list, update, delete, opt-in state, and lookups by phone.

Phones are normalised to E.164 (server/sms/phones.py), stored encrypted with a keyed hash for
lookups (server/platform/crypto.py). Opt-in changes go through the consent service
(server/services/consent.py), in the same transaction as the rest of the change. For
inbound texts, `find_or_create_member_by_phone` runs inside the caller's transaction and
never commits.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import psycopg2.errors
import redis.asyncio as aioredis

from db.engine import Connection, Database
from db.queries import members as q
from server.platform import crypto
from server.sms import phones
from server.events.log import publish_events
from server.platform.errors import Conflict, NotFound, ValidationFailed
from server.services import consent
from server.platform.ids import parse_uuid
from server.platform.jsonenc import iso_time
from server.services.groups import invalidate_group_pages
from server.services.stats import forget_summary
from server.platform.settings import Settings

DUPLICATE_PHONE = "A member with this phone number already exists."


def normalize_phone(raw: str, field: str = "$.phone") -> str:
    try:
        return phones.normalize(raw)
    except phones.InvalidPhone as exc:
        raise ValidationFailed.field(field, str(exc)) from None


def _clean_email(raw: str | None) -> str | None:
    if raw is None:
        return None
    return raw.strip() or None


def _now_marker() -> datetime:
    return datetime.now(timezone.utc)


def public_member(settings: Settings, row: dict[str, Any],
                  groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The API form of a member row; phone and email decrypted for the owning church."""
    return {
        "id": str(row["id"]),
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "phone": crypto.decrypt(settings, row["phone_enc"],
                                crypto.member_phone(row["church_id"])),
        "email": crypto.decrypt_optional(settings, row["email_enc"],
                                         crypto.member_email(row["church_id"])),
        "opt_in_sms": row["opt_in_sms"],
        "opted_out_at": iso_time(row["opted_out_at"]),
        "groups": [{"id": str(g["id"]), "name": g["name"]} for g in groups or []],
        "created_at": iso_time(row["created_at"]),
    }


async def _with_groups(conn: Connection, settings: Settings, church_id: UUID,
                       rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    memberships = await q.list_groups_of_members(conn, church_id, [r["id"] for r in rows])
    by_member: dict[UUID, list[dict[str, Any]]] = {}
    for m in memberships:
        by_member.setdefault(m["member_id"], []).append(m)
    return [public_member(settings, r, by_member.get(r["id"], [])) for r in rows]


async def create_member(db: Database, settings: Settings, church_id: UUID,
                        body: dict[str, Any], source: str = "staff",
                        redis: aioredis.Redis | None = None) -> dict[str, Any]:
    """POST /members: 409 when the church already has this phone. With `redis`, the
    church's cached summary is dropped after the commit (the demo seed passes none)."""
    phone = normalize_phone(body["phone"])
    opt_in = bool(body.get("opt_in_sms", True))
    values = {
        "church_id": church_id, "first_name": body["first_name"].strip(),
        "last_name": body.get("last_name", "").strip(),
        "phone_enc": crypto.encrypt(settings, phone, crypto.member_phone(church_id)),
        "email_enc": crypto.encrypt_optional(settings, _clean_email(body.get("email")),
                                             crypto.member_email(church_id)),
        "phone_hash": crypto.phone_hash(settings, phone),
        "phone_last4_hash": crypto.phone_last4_hash(settings, church_id, phone),
        "opt_in_sms": opt_in, "opted_out_at": None if opt_in else _now_marker(),
    }
    async with db.transaction() as conn:
        row = await q.insert_member(conn, values)
        if row is None:
            raise Conflict(DUPLICATE_PHONE, [{"field": "$.phone", "message": DUPLICATE_PHONE}])
        if not opt_in:
            await consent.record_initial_opt_out(conn, church_id, row["id"], source,
                                                 "created opted out")
    if redis is not None:
        await forget_summary(redis, church_id)
    return public_member(settings, row, [])


async def get_member(db: Database, settings: Settings, church_id: UUID,
                     member_id: UUID | None) -> dict[str, Any]:
    async with db.acquire() as conn:
        row = await q.get_member(conn, church_id, member_id) if member_id else None
        if row is None:
            raise NotFound("No such member.")
        return (await _with_groups(conn, settings, church_id, [row]))[0]


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search_filters(settings: Settings, church_id: UUID, query: str) -> dict[str, Any]:
    """`q`: a whole phone (its keyed hash), exactly four digits (the keyed hash of a
    phone's last four: an index lookup), or else a substring of "first last"."""
    phone = phones.try_normalize(query) if any(c.isdigit() for c in query) else None
    if phone:
        return {"phone_hash": crypto.phone_hash(settings, phone)}
    if len(query.strip()) == crypto.LAST_DIGITS and query.strip().isdecimal():
        return {"last4_hash": crypto.phone_last4_hash(settings, church_id, query)}
    return {"name_like": _like_pattern(query.strip())}


async def list_members(db: Database, settings: Settings, church_id: UUID, limit: int,
                       cursor: str | None = None, query: str | None = None,
                       group_id: str | None = None, opted_in: str | None = None
                       ) -> tuple[list[dict[str, Any]], str | None, int | None]:
    """Newest first, and on the first page (no cursor) how many members match in all
    (`meta.total`; None on later pages: counting 100,000 rows on every page is waste).
    `query`: see `_search_filters`."""
    filters: dict[str, Any] = {}
    if query and query.strip():
        filters.update(_search_filters(settings, church_id, query))
    if group_id is not None:
        filters["group_id"] = parse_uuid(group_id)
        if filters["group_id"] is None:
            raise ValidationFailed.field("group_id", "Must be a group id.")
    if opted_in is not None:
        if opted_in not in ("true", "false"):
            raise ValidationFailed.field("opted_in", "Must be true or false.")
        filters["opted_in"] = opted_in == "true"
    async with db.acquire() as conn:
        page = await q.list_members(conn, church_id, limit, cursor, **filters)
        total = await q.count_members(conn, church_id, **filters) if not cursor else None
    return ([public_member(settings, r, r["groups"]) for r in page.rows], page.next_cursor,
            total)


async def update_member(db: Database, redis: aioredis.Redis, settings: Settings,
                        church_id: UUID, member_id: UUID | None, patch: dict[str, Any],
                        source: str = "staff") -> dict[str, Any]:
    """PATCH /members/{id}: any of the create fields; `email: null` clears it. A change of
    `opt_in_sms` goes through the consent service (ledger row and event)."""
    phone = normalize_phone(patch["phone"]) if "phone" in patch else None
    async with db.transaction() as conn:
        row = await q.get_member(conn, church_id, member_id, for_update=True) \
            if member_id else None
        if row is None:
            raise NotFound("No such member.")
        assert member_id is not None
        values = _merged(settings, row, patch, phone)
        if phone is not None:
            other = await q.get_member_by_hash(conn, church_id, values["phone_hash"])
            if other is not None and other["id"] != member_id:
                raise Conflict(DUPLICATE_PHONE,
                               [{"field": "$.phone", "message": DUPLICATE_PHONE}])
        try:
            updated = await q.update_member(conn, values)
        except psycopg2.errors.UniqueViolation:
            raise Conflict(DUPLICATE_PHONE,
                           [{"field": "$.phone", "message": DUPLICATE_PHONE}]) from None
        assert updated is not None
        changed = consent.ConsentOutcome()
        if "opt_in_sms" in patch:
            changed = await consent.set_consent(conn, church_id, member_id,
                                                bool(patch["opt_in_sms"]), source)
            updated = {**updated, "opt_in_sms": changed.opt_in_sms,
                       "opted_out_at": changed.opted_out_at}
        group_ids = await q.list_group_ids_of_member(conn, church_id, member_id)
        result = (await _with_groups(conn, settings, church_id, [updated]))[0]
    await publish_events(redis, changed.events)
    await invalidate_group_pages(redis, church_id, group_ids)
    await forget_summary(redis, church_id)
    return result


def _merged(settings: Settings, row: dict[str, Any], patch: dict[str, Any],
            phone: str | None) -> dict[str, Any]:
    # Opt-in keeps the row's value here: update_member changes it through consent.
    values = {key: row[key] for key in ("first_name", "last_name", "phone_enc", "email_enc",
                                        "opt_in_sms", "opted_out_at")}
    values.update(church_id=row["church_id"], id=row["id"],
                  phone_hash=None, phone_last4_hash=None)
    for key in ("first_name", "last_name"):
        if key in patch:
            values[key] = patch[key].strip()
    if "email" in patch:
        values["email_enc"] = crypto.encrypt_optional(settings, _clean_email(patch["email"]),
                                                      crypto.member_email(row["church_id"]))
    current_phone = crypto.decrypt(settings, row["phone_enc"],
                                   crypto.member_phone(row["church_id"]))
    if phone is not None and phone != current_phone:
        values["phone_enc"] = crypto.encrypt(settings, phone,
                                             crypto.member_phone(row["church_id"]))
    values["phone_hash"] = crypto.phone_hash(settings, phone or current_phone)
    values["phone_last4_hash"] = crypto.phone_last4_hash(settings, row["church_id"],
                                                         phone or current_phone)
    return values


async def delete_member(db: Database, redis: aioredis.Redis, church_id: UUID,
                        member_id: UUID | None) -> None:
    async with db.transaction() as conn:
        group_ids = await q.list_group_ids_of_member(conn, church_id, member_id) \
            if member_id else []
        deleted = await q.delete_member(conn, church_id, member_id) if member_id else False
    if not deleted:
        raise NotFound("No such member.")
    await invalidate_group_pages(redis, church_id, group_ids)
    await forget_summary(redis, church_id)


async def find_or_create_member_by_phone(conn: Connection, settings: Settings, church_id: UUID,
                                         phone_e164: str, opt_in: bool) -> dict[str, Any]:
    """The member of the church with this E.164 phone, created (unnamed) if there is none.

    Runs inside the caller's transaction and does not commit. Returns the public member
    fields (`groups` empty for a new member) plus `created: bool`. A member created opted
    out gets a consent row (source "inbound").
    """
    digest = crypto.phone_hash(settings, phone_e164)
    row = await q.get_member_by_hash(conn, church_id, digest)
    created = False
    if row is None:
        row = await q.insert_member(conn, {
            "church_id": church_id, "first_name": "", "last_name": "",
            "phone_enc": crypto.encrypt(settings, phone_e164, crypto.member_phone(church_id)),
            "email_enc": None, "phone_hash": digest,
            "phone_last4_hash": crypto.phone_last4_hash(settings, church_id, phone_e164),
            "opt_in_sms": opt_in,
            "opted_out_at": None if opt_in else _now_marker()})
        created = row is not None
        if row is None:  # a concurrent insert won the race: read its row
            row = await q.get_member_by_hash(conn, church_id, digest)
        elif not opt_in:
            await consent.record_initial_opt_out(
                conn, church_id, row["id"], "inbound",
                "unknown sender; church opt-in setting is off")
    assert row is not None
    member = (await _with_groups(conn, settings, church_id, [row]))[0] if not created \
        else public_member(settings, row, [])
    member["created"] = created
    return member
