"""SQL for broadcasts (`messages`): accept, read, list, cancel, schedule and complete.

`messages` is partitioned by month on `created_at`; every statement that can names the
row's `created_at` so PostgreSQL prunes to one partition. Recipient rows live in
`db/queries/recipients.py`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.paging import NewestFirst, Page, fetch_page
from db.tables import groups, idempotency_keys, members, messages, numbers

M = messages.c
MESSAGE_COLUMNS = (M.id, M.church_id, M.created_at, M.number_id, M.body, M.status,
                   M.scheduled_at, M.group_ids, M.member_ids, M.recipient_count, M.segments,
                   M.encoding, M.estimated_cost_cents, M.created_by, M.recurring_id,
                   M.completed_at)

_NUMBER_COLUMNS = (numbers.c.id, numbers.c.church_id, numbers.c.phone, numbers.c.provider,
                   numbers.c.messaging_profile_id, numbers.c.mps, numbers.c.status)
_GET_NUMBER = sa.select(*_NUMBER_COLUMNS).where(
    numbers.c.church_id == sa.bindparam("church_id"), numbers.c.id == sa.bindparam("id"))
_OLDEST_NUMBER = (sa.select(*_NUMBER_COLUMNS)
                  .where(numbers.c.church_id == sa.bindparam("church_id"))
                  .order_by(numbers.c.created_at, numbers.c.id).limit(1))

_KNOWN_GROUPS = sa.select(groups.c.id).where(
    groups.c.church_id == sa.bindparam("church_id"),
    groups.c.id.in_(sa.bindparam("ids", expanding=True)))
_KNOWN_MEMBERS = sa.select(members.c.id).where(
    members.c.church_id == sa.bindparam("church_id"),
    members.c.id.in_(sa.bindparam("ids", expanding=True)))

_INSERT = (
    sa.insert(messages)
    .values(church_id=sa.bindparam("church_id"), number_id=sa.bindparam("number_id"),
            body=sa.bindparam("body"), status=sa.bindparam("status"),
            scheduled_at=sa.bindparam("scheduled_at"),
            group_ids=sa.bindparam("group_ids", type_=M.group_ids.type),
            member_ids=sa.bindparam("member_ids", type_=M.member_ids.type),
            recipient_count=sa.bindparam("recipient_count"),
            segments=sa.bindparam("segments"), encoding=sa.bindparam("encoding"),
            estimated_cost_cents=sa.bindparam("estimated_cost_cents"),
            created_by=sa.bindparam("created_by"), recurring_id=sa.bindparam("recurring_id"))
    .returning(*MESSAGE_COLUMNS))

# Who a broadcast reaches: opted-in members named directly or through a group. Members
# are unique per (church_id, phone_hash), so one row per member is one row per phone.
_AUDIENCE_WHERE = """
      m.church_id = :church_id AND m.opt_in_sms AND m.opted_out_at IS NULL
  AND (m.id = ANY(CAST(:member_ids AS uuid[]))
       OR EXISTS (SELECT 1 FROM group_memberships g
                   WHERE g.church_id = :church_id AND g.member_id = m.id
                     AND g.group_id = ANY(CAST(:group_ids AS uuid[]))))
"""
_COUNT_AUDIENCE = sa.text("SELECT count(*) FROM members m WHERE" + _AUDIENCE_WHERE)
_INSERT_RECIPIENTS = sa.text("""
INSERT INTO message_recipients (church_id, message_id, member_id, created_at, number_id,
                                phone_enc, phone_hash, status, next_attempt_at)
SELECT m.church_id, :message_id, m.id, :created_at, :number_id, m.phone_enc, m.phone_hash,
       'queued', now()
  FROM members m WHERE""" + _AUDIENCE_WHERE)

_SET_COUNT = (sa.update(messages)
              .where(M.church_id == sa.bindparam("church_id"), M.id == sa.bindparam("id"),
                     M.created_at == sa.bindparam("created_at"))
              .values(recipient_count=sa.bindparam("recipient_count"),
                      status=sa.bindparam("status")))

_SET_COUNT_COST = (
    sa.update(messages)
    .where(M.church_id == sa.bindparam("church_id"), M.id == sa.bindparam("id"),
           M.created_at == sa.bindparam("created_at"))
    .values(recipient_count=sa.bindparam("recipient_count"),
            estimated_cost_cents=sa.bindparam("cost")))

_GET = sa.select(*MESSAGE_COLUMNS).where(M.church_id == sa.bindparam("church_id"),
                                         M.id == sa.bindparam("id"))
_GET_AT = sa.select(*MESSAGE_COLUMNS).where(M.church_id == sa.bindparam("church_id"),
                                            M.id == sa.bindparam("id"),
                                            M.created_at == sa.bindparam("created_at"))
_ORDER = NewestFirst(M.created_at, M.id)
_LIST = _ORDER.paged(sa.select(*MESSAGE_COLUMNS).where(M.church_id == sa.bindparam("church_id")))
_LIST_BY_STATUS = _ORDER.paged(sa.select(*MESSAGE_COLUMNS).where(
    M.church_id == sa.bindparam("church_id"), M.status == sa.bindparam("status")))

# An edit waits for a scheduler starting the same send (its row lock), then finds it
# no longer `scheduled`: edits and starts never interleave.
_LOCK_SCHEDULED = (sa.select(*MESSAGE_COLUMNS)
                   .where(M.church_id == sa.bindparam("church_id"), M.id == sa.bindparam("id"),
                          M.created_at == sa.bindparam("created_at"),
                          M.status == "scheduled")
                   .with_for_update())
_EDIT_SCHEDULED = (
    sa.update(messages)
    .where(M.church_id == sa.bindparam("church_id"), M.id == sa.bindparam("id"),
           M.created_at == sa.bindparam("created_at"), M.status == "scheduled")
    .values(body=sa.bindparam("body"), scheduled_at=sa.bindparam("scheduled_at"),
            group_ids=sa.bindparam("group_ids", type_=M.group_ids.type),
            member_ids=sa.bindparam("member_ids", type_=M.member_ids.type),
            number_id=sa.bindparam("number_id"), segments=sa.bindparam("segments"),
            encoding=sa.bindparam("encoding"))
    .returning(*MESSAGE_COLUMNS))

_MARK_SENDING = (sa.update(messages)
                 .where(M.church_id == sa.bindparam("church_id"), M.id == sa.bindparam("id"),
                        M.created_at == sa.bindparam("created_at"), M.status == "queued")
                 .values(status="sending"))

_COMPLETE_IF_DONE = sa.text("""
UPDATE messages SET status = 'completed', completed_at = now()
 WHERE church_id = :church_id AND id = :id AND created_at = :created_at
   AND status IN ('queued', 'sending')
   AND NOT EXISTS (SELECT 1 FROM message_recipients r
                    WHERE r.church_id = :church_id AND r.message_id = :id
                      AND r.created_at = :created_at
                      AND r.status IN ('queued', 'sending', 'retrying'))
RETURNING completed_at
""")

# A requeued dead letter puts a finished broadcast back to work.
_REOPEN = (sa.update(messages)
           .where(M.church_id == sa.bindparam("church_id"), M.id == sa.bindparam("id"),
                  M.created_at == sa.bindparam("created_at"),
                  M.status.in_(("queued", "sending", "completed")))
           .values(status="sending", completed_at=None)
           .returning(M.status))

_CANCEL = (sa.update(messages)
           .where(M.church_id == sa.bindparam("church_id"), M.id == sa.bindparam("id"),
                  M.created_at == sa.bindparam("created_at"),
                  M.status.in_(("scheduled", "queued", "sending")))
           .values(status="canceled", completed_at=sa.func.now())
           .returning(M.status))

# A due scheduled send, locked so exactly one scheduler starts it.
_CLAIM_DUE_SCHEDULED = (
    sa.select(*MESSAGE_COLUMNS)
    .where(M.status == "scheduled", M.scheduled_at <= sa.func.now())
    .order_by(M.scheduled_at).limit(1)
    .with_for_update(skip_locked=True))

_IDEMPOTENT_GET = sa.select(
    idempotency_keys.c.request_hash, idempotency_keys.c.status_code,
    idempotency_keys.c.response, idempotency_keys.c.created_at).where(
    idempotency_keys.c.church_id == sa.bindparam("church_id"),
    idempotency_keys.c.scope == sa.bindparam("scope"),
    idempotency_keys.c.key == sa.bindparam("key"),
    idempotency_keys.c.created_at > sa.func.now() - sa.text("interval '24 hours'"))
# Insert, or take over a key older than 24 h; a live key of another request wins (no row).
_IDEMPOTENT_PUT = sa.text("""
INSERT INTO idempotency_keys (church_id, scope, key, request_hash, status_code, response)
VALUES (:church_id, :scope, :key, :request_hash, :status_code, CAST(:response AS jsonb))
ON CONFLICT (church_id, scope, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code,
       response = EXCLUDED.response, created_at = now()
 WHERE idempotency_keys.created_at <= now() - interval '24 hours'
RETURNING key
""")


async def get_number(conn: Connection, church_id: UUID, number_id: UUID | None) -> Row | None:
    """The church's number `number_id`, or its oldest number when None."""
    if number_id is None:
        return await conn.fetch_one(_OLDEST_NUMBER, {"church_id": church_id})
    return await conn.fetch_one(_GET_NUMBER, {"church_id": church_id, "id": number_id})


async def unknown_ids(conn: Connection, church_id: UUID, kind: str, ids: list[UUID]
                      ) -> list[UUID]:
    """Which of `ids` are not the church's groups (kind="groups") or members."""
    if not ids:
        return []
    stmt = _KNOWN_GROUPS if kind == "groups" else _KNOWN_MEMBERS
    found = {r["id"] for r in await conn.fetch_all(stmt, {"church_id": church_id,
                                                            "ids": ids})}
    return [i for i in ids if i not in found]


async def insert_message(conn: Connection, values: dict[str, Any]) -> Row:
    row = await conn.fetch_one(_INSERT, {"recipient_count": 0, "recurring_id": None,
                                         "created_by": None, **values})
    assert row is not None
    return row


async def count_audience(conn: Connection, church_id: UUID, group_ids: list[UUID],
                         member_ids: list[UUID]) -> int:
    return int(await conn.fetch_val(_COUNT_AUDIENCE, {
        "church_id": church_id, "group_ids": group_ids, "member_ids": member_ids}) or 0)


async def insert_recipients(conn: Connection, message: Row) -> int:
    """One set-based INSERT … SELECT of the audience; returns how many rows it wrote."""
    return await conn.execute(_INSERT_RECIPIENTS, {
        "church_id": message["church_id"], "message_id": message["id"],
        "created_at": message["created_at"], "number_id": message["number_id"],
        "group_ids": list(message["group_ids"]), "member_ids": list(message["member_ids"])})


async def update_recipient_count(conn: Connection, message: Row, count: int,
                                 status: str) -> None:
    await conn.execute(_SET_COUNT, {"church_id": message["church_id"], "id": message["id"],
                                    "created_at": message["created_at"],
                                    "recipient_count": count, "status": status})


async def set_count_and_cost(conn: Connection, message: Row, count: int, cost: Any) -> None:
    await conn.execute(_SET_COUNT_COST, {"church_id": message["church_id"], "id": message["id"],
                                         "created_at": message["created_at"],
                                         "recipient_count": count, "cost": cost})


async def get_message(conn: Connection, church_id: UUID, message_id: UUID) -> Row | None:
    return await conn.fetch_one(_GET, {"church_id": church_id, "id": message_id})


async def list_messages(conn: Connection, church_id: UUID, limit: int,
                        cursor: str | None, status: str | None = None) -> Page:
    """Broadcasts newest first, all or those in one `status`."""
    if status is None:
        return await fetch_page(conn, _ORDER, _LIST, {"church_id": church_id}, limit, cursor)
    return await fetch_page(conn, _ORDER, _LIST_BY_STATUS,
                            {"church_id": church_id, "status": status}, limit, cursor)


async def lock_scheduled(conn: Connection, message: Row) -> Row | None:
    """Lock a broadcast still `scheduled` (inside a transaction); None once it started."""
    return await conn.fetch_one(_LOCK_SCHEDULED, _key(message))


async def edit_scheduled(conn: Connection, message: Row, values: dict[str, Any]) -> Row | None:
    return await conn.fetch_one(_EDIT_SCHEDULED, {**values, **_key(message)})


def _key(message: Row) -> dict[str, Any]:
    return {"church_id": message["church_id"], "id": message["id"],
            "created_at": message["created_at"]}


async def mark_sending(conn: Connection, message: Row) -> bool:
    """queued → sending; True only for the call that made the move."""
    return await conn.execute(_MARK_SENDING, _key(message)) > 0


async def complete_if_done(conn: Connection, message: Row) -> bool:
    """Mark the broadcast completed when no recipient still needs work."""
    return await conn.fetch_one(_COMPLETE_IF_DONE, _key(message)) is not None


async def reopen_message(conn: Connection, message: Row) -> bool:
    return await conn.fetch_one(_REOPEN, _key(message)) is not None


async def get_message_at(conn: Connection, church_id: UUID, message_id: UUID,
                         created_at: datetime) -> Row | None:
    """One broadcast by its full key (partition pruned by created_at)."""
    return await conn.fetch_one(_GET_AT, {"church_id": church_id, "id": message_id,
                                          "created_at": created_at})


async def cancel_message(conn: Connection, message: Row) -> bool:
    return await conn.fetch_one(_CANCEL, _key(message)) is not None


async def claim_due_scheduled(conn: Connection) -> Row | None:
    """Lock one due scheduled broadcast (call inside a transaction)."""
    return await conn.fetch_one(_CLAIM_DUE_SCHEDULED, {})


async def get_idempotent(conn: Connection, church_id: UUID, scope: str, key: str
                         ) -> Row | None:
    return await conn.fetch_one(_IDEMPOTENT_GET, {"church_id": church_id, "scope": scope,
                                                  "key": key})


async def put_idempotent(conn: Connection, church_id: UUID, scope: str, key: str,
                         request_hash: bytes, status_code: int, response: str) -> bool:
    """Record a response for the key; False when a live record of it already exists."""
    row = await conn.fetch_one(_IDEMPOTENT_PUT, {
        "church_id": church_id, "scope": scope, "key": key, "request_hash": request_hash,
        "status_code": status_code, "response": response})
    return row is not None


# Merge fields (server/services/merge.py): the audience members whose merged text may be
# the longest — in one pass over the audience, the longest names of each kind: ASCII or
# not (a name outside ASCII may force UCS-2), with or without an empty name (which takes
# a fallback) — and the first few by name for a preview. Bounded however big the send.
_NAME_COLUMNS = "SELECT m.id, m.first_name, m.last_name FROM members m WHERE"
# One full sort of the audience: in memory, and without JIT compilation, which the
# audience filter's cost estimate triggers and which cost more than the query itself
# (100,000 members: ~0.7 s of JIT). SET LOCAL lasts for this transaction only (and works in
# the implicit one db/engine.py gives a statement outside a transaction).
_MERGE_CANDIDATES = sa.text("""SELECT id, first_name, last_name FROM (
  SELECT m.id, m.first_name, m.last_name,
         row_number() OVER (
           PARTITION BY (m.first_name || m.last_name) ~ '[^ -~]',
                        (m.first_name = '' OR m.last_name = '')
           ORDER BY char_length(m.first_name) + char_length(m.last_name) DESC, m.id) AS rank
    FROM members m WHERE""" + _AUDIENCE_WHERE + """) ranked
 WHERE rank <= :n""")
_MERGE_SETTINGS = "SET LOCAL jit = off; SET LOCAL work_mem = '32MB'; "
_FIRST_BY_NAME = sa.text(
    _NAME_COLUMNS + _AUDIENCE_WHERE
    + " ORDER BY lower(m.first_name), lower(m.last_name), m.id LIMIT :n")


async def list_merge_candidates(conn: Connection, church_id: UUID, group_ids: list[UUID],
                                member_ids: list[UUID], limit: int) -> list[Row]:
    """Rows `{id, first_name, last_name}`: at most 3 × `limit` audience members, among
    them the one whose merged text is longest."""
    # Sent with its settings as one simple query, so they hold for it alone even outside a
    # transaction: JIT compiling this window query costs more than running it.
    return await conn.fetch_all(sa.text(_MERGE_SETTINGS + _MERGE_CANDIDATES.text), {
        "church_id": church_id, "group_ids": group_ids, "member_ids": member_ids, "n": limit})


async def list_audience_by_name(conn: Connection, church_id: UUID, group_ids: list[UUID],
                                member_ids: list[UUID], limit: int) -> list[Row]:
    """The first `limit` audience members by name: `{id, first_name, last_name}`."""
    return await conn.fetch_all(_FIRST_BY_NAME, {
        "church_id": church_id, "group_ids": group_ids, "member_ids": member_ids, "n": limit})
