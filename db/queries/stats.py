"""SQL for a church's usage summary (`GET /stats/summary`, API.md §10).

Outbound texts are the recipients of broadcasts plus outbound conversation messages (a
broadcast's text is kept once, as its recipients). Time bounds are parameters, so each
count reads only the month partitions it needs.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection
from db.tables import churches, conversation_messages, members, message_recipients

M, R, CM = members.c, message_recipients.c, conversation_messages.c
FINAL_STATUSES = ("delivered", "failed", "undeliverable")
_CHURCH = sa.bindparam("church_id")
_SINCE = sa.bindparam("since", type_=sa.DateTime(timezone=True))


def _count(where: Any = sa.true()) -> Any:
    return sa.func.count().filter(where)


_TIMEZONE = sa.select(churches.c.timezone).where(churches.c.id == _CHURCH)
_MEMBERS = sa.select(_count().label("members"), _count(M.opt_in_sms).label("opted_in")
                     ).where(M.church_id == _CHURCH)
_RECIPIENTS = sa.select(
    _count(R.status != "canceled").label("sent"),
    _count(R.status == "delivered").label("delivered"),
    _count(R.status.in_(FINAL_STATUSES)).label("final"),
).where(R.church_id == _CHURCH, R.created_at >= _SINCE)
_CONVERSATION = sa.select(
    _count(CM.direction == "outbound").label("sent"),
    _count(CM.direction == "inbound").label("inbound"),
    _count(sa.and_(CM.direction == "outbound", CM.status == "delivered")).label("delivered"),
    _count(sa.and_(CM.direction == "outbound", CM.status.in_(FINAL_STATUSES))
           ).label("final"),
).where(CM.church_id == _CHURCH, CM.created_at >= _SINCE)


async def church_timezone(conn: Connection, church_id: UUID) -> str | None:
    return await conn.fetch_val(_TIMEZONE, {"church_id": church_id})


async def count_members(conn: Connection, church_id: UUID) -> dict[str, int]:
    """`{members, opted_in}` of the church."""
    row = await conn.fetch_one(_MEMBERS, {"church_id": church_id})
    assert row is not None
    return row


async def count_recipients_since(conn: Connection, church_id: UUID, since: datetime
                                 ) -> dict[str, int]:
    """Broadcast recipients created since `since`: `{sent, delivered, final}` (sent leaves
    out canceled ones; final counts delivered, failed and undeliverable)."""
    row = await conn.fetch_one(_RECIPIENTS, {"church_id": church_id, "since": since})
    assert row is not None
    return row


async def count_conversation_since(conn: Connection, church_id: UUID, since: datetime
                                   ) -> dict[str, int]:
    """Conversation messages since `since`: `{sent, inbound, delivered, final}`."""
    row = await conn.fetch_one(_CONVERSATION, {"church_id": church_id, "since": since})
    assert row is not None
    return row
