"""SQL for inbound carrier traffic: durable webhook dedupe, delivery-receipt updates
of broadcast recipients, and early receipts held until their send's provider id exists.

Dedupe is keyed by (provider, provider event id) and lives in the same transaction as the
effects of the webhook, so a retried webhook either finds the committed row (and changes
nothing) or waits on the in-flight one (and then changes nothing).
"""
from __future__ import annotations

from uuid import UUID

import psycopg2
import sqlalchemy as sa
import ujson

from db.engine import Connection, Row

_PRUNE_DEDUPE = sa.text("""
DELETE FROM inbound_dedupe WHERE received_at < now() - make_interval(hours => :hours)
""")


def _carried(e: str, m_extra: str = "", r_extra: str = "") -> str:
    """SQL: a conversation message or broadcast recipient of church `{e}church_id` carries
    provider id `{e}provider_message_id` (and meets the extra conditions)."""
    return f"""
       EXISTS (SELECT 1 FROM conversation_messages m
                WHERE m.church_id = {e}church_id
                  AND m.provider_message_id = {e}provider_message_id{m_extra})
    OR EXISTS (SELECT 1 FROM message_recipients r
                WHERE r.church_id = {e}church_id
                  AND r.provider_message_id = {e}provider_message_id{r_extra})"""


# Hold a receipt that moved nothing, unless a row carrying its provider id is already past
# it (a late, backwards status: nothing to hold). A row that carries the id but could still
# move was committed after this receipt's UPDATEs ran: hold it, the next pass applies it.
# Returns true = held (or already held).
_HOLD_RECEIPT = sa.text("""
WITH k AS (SELECT CAST(:church_id AS uuid) AS church_id,
                  CAST(:provider_message_id AS text) AS provider_message_id),
hold AS (SELECT NOT (""" + _carried("k.", " AND m.status <> ALL(:message_from)",
                                    " AND r.status <> ALL(:recipient_from)") + """) AS yes
           FROM k),
ins AS (
  INSERT INTO early_receipts (church_id, provider, provider_message_id, status, error_code,
                              error, number_id)
  SELECT k.church_id, :provider, k.provider_message_id, :status, :error_code, :error,
         CAST(:number_id AS uuid)
    FROM k, hold WHERE hold.yes
  ON CONFLICT (church_id, provider, provider_message_id, status) DO NOTHING)
SELECT yes FROM hold
""")

# Held receipts whose send now has its provider id, oldest first (carrier order), locked so
# concurrent passes split the work; with the church fields the opt-out path needs.
_READY_RECEIPTS = sa.text("""
SELECT e.church_id, e.provider, e.provider_message_id, e.status, e.error_code, e.error,
       e.number_id, c.name AS church_name, c.help_text, c.unknown_sender_opt_in
  FROM early_receipts e JOIN churches c ON c.id = e.church_id
 WHERE """ + _carried("e.") + """
 ORDER BY e.received_at
 LIMIT :limit
   FOR UPDATE OF e SKIP LOCKED
""")

_DELETE_RECEIPT = sa.text("""
DELETE FROM early_receipts
 WHERE church_id = :church_id AND provider = :provider
   AND provider_message_id = :provider_message_id AND status = :status
""")

_PRUNE_RECEIPTS = sa.text("""
DELETE FROM early_receipts WHERE received_at < now() - make_interval(hours => :hours)
""")


async def delete_old_dedupe(conn: Connection, older_than_hours: int = 72) -> int:
    """Dedupe rows are kept at least 72 h (ARCHITECTURE.md §4)."""
    return await conn.execute(_PRUNE_DEDUPE, {"hours": older_than_hours})


async def hold_receipt(conn: Connection, church_id: UUID, number_id: UUID | None,
                       provider: str, provider_message_id: str, status: str,
                       error_code: str | None, error: str | None,
                       message_from: tuple[str, ...], recipient_from: tuple[str, ...]
                       ) -> bool:
    """Keep a receipt that moved nothing for `apply_early_receipts`; False (not kept) when
    a row carrying its provider id is in none of the `*_from` statuses, i.e. already past
    it. `*_from`: the statuses the receipt may move a message / recipient from."""
    return bool(await conn.fetch_val(_HOLD_RECEIPT, {
        "church_id": church_id, "number_id": number_id, "provider": provider,
        "provider_message_id": provider_message_id, "status": status,
        "error_code": error_code, "error": error, "message_from": list(message_from),
        "recipient_from": list(recipient_from)}))


async def lock_ready_receipts(conn: Connection, limit: int) -> list[Row]:
    """Held receipts that can be applied now; call inside a transaction (rows locked)."""
    return await conn.fetch_all(_READY_RECEIPTS, {"limit": limit})


async def delete_receipt(conn: Connection, row: Row) -> None:
    await conn.execute(_DELETE_RECEIPT, {k: row[k] for k in (
        "church_id", "provider", "provider_message_id", "status")})


async def delete_old_receipts(conn: Connection, older_than_hours: int = 72) -> int:
    """A receipt whose send never got its provider id is dropped with its dedupe row."""
    return await conn.execute(_PRUNE_RECEIPTS, {"hours": older_than_hours})


# ----- group commit (server/services/webhook_batch.py) -------------------------------

# The hot path of every webhook batch, one statement: every event's number → church, the
# sending member of a text (by phone hash, when the church knows it: the common case costs
# no extra round trip), and the dedupe rows inserted in one go (sorted, so two batches
# insert in the same order); `fresh` = false: a repeat of a seen event. `idx` is the
# event's place in the batch; an event whose number no church owns has no row. The
# caller sends each (provider, event id) once.
_ROUTE_BATCH = sa.text("""
WITH e AS (
  SELECT * FROM unnest(CAST(:idx AS int[]), CAST(:providers AS text[]),
                       CAST(:event_ids AS text[]), CAST(:phones AS text[]),
                       CAST(:senders AS bytea[]))
           AS e(idx, event_provider, event_id, phone, sender_hash)),
n AS (
  SELECT e.idx, e.event_provider, e.event_id, nb.id, nb.church_id, nb.phone, nb.provider,
         nb.provider_handles_opt_out, c.name AS church_name, c.help_text,
         c.unknown_sender_opt_in, mb.id AS member_id, mb.first_name AS member_first_name,
         mb.last_name AS member_last_name
    FROM e JOIN numbers nb ON nb.phone = e.phone JOIN churches c ON c.id = nb.church_id
    -- LATERAL + LIMIT: one probe of the (church_id, phone_hash) index per text, whatever
    -- the statistics say (a hash join over an unanalysed `members` walked every member).
    LEFT JOIN LATERAL (SELECT m.id, m.first_name, m.last_name FROM members m
                        WHERE m.church_id = nb.church_id AND m.phone_hash = e.sender_hash
                        LIMIT 1) mb ON true),
d AS (
  INSERT INTO inbound_dedupe (provider, provider_event_id, church_id)
  SELECT event_provider, event_id, church_id FROM n ORDER BY event_provider, event_id
  ON CONFLICT (provider, provider_event_id) DO NOTHING
  RETURNING provider, provider_event_id)
SELECT n.*, EXISTS (SELECT 1 FROM d WHERE d.provider = n.event_provider
                                      AND d.provider_event_id = n.event_id) AS fresh
  FROM n
""")

# Delivery receipts moving broadcast recipients, many at once (at most one receipt per
# provider id: the caller applies a batch's second receipt for an id in a later round).
# Forward only: `allowed` maps each status to the statuses it may move a row from (never a
# later one).
_RECIPIENT_STATUSES = sa.text("""
UPDATE message_recipients r
   SET status = v.status, last_error = COALESCE(v.error, r.last_error),
       sent_at = CASE WHEN v.status = 'sent' THEN COALESCE(r.sent_at, now())
                      ELSE r.sent_at END,
       delivered_at = CASE WHEN v.status = 'delivered' THEN now() ELSE r.delivered_at END,
       updated_at = now()
  FROM unnest(CAST(:idx AS int[]), CAST(:church_ids AS uuid[]), CAST(:pmids AS text[]),
              CAST(:statuses AS text[]), CAST(:errors AS text[]))
       AS v(idx, church_id, pmid, status, error)
 WHERE r.church_id = v.church_id AND r.provider_message_id = v.pmid
   AND jsonb_exists(CAST(:allowed AS jsonb) -> v.status, r.status)
RETURNING v.idx, r.message_id, r.member_id, r.status
""")


async def route_events(conn: Connection,
                       events: list[tuple[int, str, str, str, bytes | None]]) -> list[Row]:
    """Route and dedupe a batch: `events` are (idx, provider, event id, our number, the
    sender's phone hash or None) with distinct (provider, event id). One row per routed
    event: the number with its church's name, help_text, unknown_sender_opt_in, `idx`,
    `fresh` (new, and now recorded) and, when the church knows the sender, `member_id`,
    `member_first_name`, `member_last_name`. None for an event whose number no church owns
    (nothing is recorded for it)."""
    if not events:
        return []
    idx, providers, event_ids, phones, senders = (list(col) for col in zip(*events))
    return await conn.fetch_all(_ROUTE_BATCH, {
        "idx": idx, "providers": providers, "event_ids": event_ids, "phones": phones,
        "senders": [psycopg2.Binary(h) if h is not None else None for h in senders]})


# A receipt as the multi-row status updates take it: (idx in its batch, church id,
# provider message id, status, error); at most one per provider id in one statement.
ReceiptRow = tuple[int, UUID, str, str, str | None]


def receipt_params(receipts: list[ReceiptRow], allowed: dict[str, tuple[str, ...]]
                   ) -> dict[str, object]:
    """The unnest() arrays of `receipts` and the forward-only map (status → the statuses
    a row may move from), as both status updates bind them."""
    idx, church_ids, pmids, statuses, errors = (list(col) for col in zip(*receipts))
    return {"idx": idx, "church_ids": church_ids, "pmids": pmids, "statuses": statuses,
            "errors": errors, "allowed": ujson.dumps(allowed)}


async def update_recipient_statuses(conn: Connection, receipts: list[ReceiptRow],
                                    allowed: dict[str, tuple[str, ...]]) -> list[Row]:
    """Move the broadcast recipients carrying the receipts' provider ids forward:
    `receipts` are (idx, church id, provider id, status, error), one per provider id.
    Returns the moved rows with their receipt's idx."""
    if not receipts:
        return []
    return await conn.fetch_all(_RECIPIENT_STATUSES, receipt_params(receipts, allowed))
