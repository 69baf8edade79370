"""SQL for the outbox's backlog gauge (`ywm_queue_oldest_age_seconds{queue="outbox"}`).

Work that is overdue: a conversation reply waiting to go (`queued` replies are due at
once), or a broadcast recipient whose lease ran out (`sending`, its worker died) or
whose retry time passed (`retrying`) and that no worker has taken yet. Broadcast
recipients still `queued` are left out on purpose: a broadcast is paced by its number's
MPS, so a 5,000-member send on a 20 MPS number keeps rows waiting for four minutes by
design (docs/decisions.md, "Queue age"). Both scans read the partial pending indexes.
"""
from __future__ import annotations

import sqlalchemy as sa

from db.engine import Connection

# least() skips NULLs: with nothing overdue in either table the age is NULL (0 below).
_OLDEST_OVERDUE = sa.text("""
SELECT extract(epoch FROM now() - least(
  (SELECT min(next_attempt_at) FROM message_recipients
    WHERE status IN ('sending', 'retrying') AND next_attempt_at <= now()
      AND awaiting_receipt_until IS NULL),
  (SELECT min(next_attempt_at) FROM conversation_messages
    WHERE status IN ('queued', 'sending', 'retrying') AND next_attempt_at <= now())
)) AS age
""")


async def oldest_overdue_seconds(conn: Connection) -> float:
    """Seconds the most overdue outbox work has waited past its due time (0: none)."""
    age = await conn.fetch_val(_OLDEST_OVERDUE, {})
    return max(0.0, float(age)) if age is not None else 0.0
