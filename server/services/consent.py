"""Consent: the one way a member's opt-in state changes, whoever reports the change.

Sources: a STOP/START keyword in an inbound text (`apply_keyword`), a carrier saying the
recipient opted out (`record_carrier_opt_out`: a delivery receipt or a send answer), staff
through the API (`set_consent` with source "staff"). Each change, in the caller's
transaction, flips the member row, writes a consent_ledger row (member, number, source,
keyword, time) and stores a `member.opted_out`/`member.opted_in` event (one shape,
server/events/types.py); a repeat that changes nothing writes none of them. After the
commit the caller publishes `events` and passes `group_ids` to `drop_cached_pages` (the
cached member pages of the member's groups show opt-in).

At most one confirmation reply per keyword change, and none when the number's provider
already auto-replies (`numbers.provider_handles_opt_out`). HELP always gets the church's
help text (unless the provider answers it). Non-exact intents ("stop texting me") change
nothing automatically: they are recorded as action `review` for staff. Keyword matching
itself lives in server/sms/keywords.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Connection
from db.queries import members as members_q
from server.events import types as event_types
from server.events.log import record_event
from server.platform.errors import NotFound, RecipientOptedOut
from server.services.groups import invalidate_group_pages
from server.services.stats import forget_summary
from server.sms.keywords import keyword_action

STOP_CONFIRMATION = ("{church}: you are unsubscribed and will get no more texts from this "
                     "number. Reply START to resubscribe.")
START_CONFIRMATION = ("{church}: you are subscribed again. Reply HELP for help, "
                      "STOP to unsubscribe.")


@dataclass
class ConsentOutcome:
    action: str | None = None            # opt_out | opt_in | help | review | None
    changed: bool = False
    reply: str | None = None             # confirmation text to queue, if any
    events: list[dict[str, Any]] = field(default_factory=list)  # publish after commit
    group_ids: list[UUID] = field(default_factory=list)  # caches to drop after commit
    # The member's state after the call (also when nothing changed).
    opt_in_sms: bool | None = None
    opted_out_at: Any = None


async def apply_keyword(conn: Connection, church: dict[str, Any], number: dict[str, Any],
                        member_id: UUID, body: str, carrier_replied: bool = False
                        ) -> ConsentOutcome:
    """Act on STOP/START/HELP (CARRIERS.md §4.2) inside the caller's transaction.

    No confirmation when the number's provider answers keywords itself, or when this very
    webhook says the carrier already did (`carrier_replied`)."""
    matched = keyword_action(body)
    if matched is None:
        return ConsentOutcome()
    action, keyword = matched
    church_id, number_id = church["id"], number["id"]
    carrier_replies = bool(number["provider_handles_opt_out"]) or carrier_replied
    if action == "help":
        await members_q.insert_consent(conn, church_id, member_id, "help", "keyword",
                                       keyword=keyword, number_id=number_id)
        return ConsentOutcome("help", reply=None if carrier_replies else church["help_text"])
    if action == "review":
        await members_q.insert_consent(conn, church_id, member_id, "review", "keyword",
                                       number_id=number_id, detail=body[:500])
        return ConsentOutcome("review")
    opted_in = action == "opt_in"
    outcome = await set_consent(conn, church_id, member_id, opted_in, "keyword",
                                keyword=keyword, number_id=number_id)
    if outcome.changed and not carrier_replies:
        template = START_CONFIRMATION if opted_in else STOP_CONFIRMATION
        outcome.reply = template.format(church=church["name"])
    return outcome


async def set_consent(conn: Connection, church_id: UUID, member_id: UUID, opted_in: bool,
                      source: str, keyword: str | None = None, number_id: UUID | None = None,
                      detail: str | None = None) -> ConsentOutcome:
    """Opt a member in or out inside the caller's transaction (no commit): member row,
    ledger row and event, only when the state changed. NotFound for a member outside
    the church."""
    row = await members_q.set_opt_in(conn, church_id, member_id, opted_in)
    outcome = ConsentOutcome("opt_in" if opted_in else "opt_out", changed=row is not None)
    if row is None:
        row = await members_q.get_member(conn, church_id, member_id)
        if row is None:
            raise NotFound("No such member.")
    outcome.opt_in_sms, outcome.opted_out_at = row["opt_in_sms"], row["opted_out_at"]
    if not outcome.changed:
        return outcome
    await members_q.insert_consent(conn, church_id, member_id, outcome.action or "",
                                   source, keyword=keyword, number_id=number_id,
                                   detail=detail)
    event = event_types.member_opted_in(member_id, source, keyword, number_id) if opted_in \
        else event_types.member_opted_out(member_id, source, row["opted_out_at"], keyword,
                                          number_id)
    outcome.events.append(await record_event(conn, church_id, event))
    outcome.group_ids = await members_q.list_group_ids_of_member(conn, church_id, member_id)
    return outcome


async def record_carrier_opt_out(conn: Connection, church_id: UUID, number_id: UUID | None,
                                 member_id: UUID, detail: str | None) -> ConsentOutcome:
    """The carrier reports the recipient opted out (a receipt or a send answer, CARRIERS.md
    §4.4): it already blocks, so mirror it without a reply. A member deleted since the
    send has nothing to mark."""
    try:
        return await set_consent(conn, church_id, member_id, False, "carrier",
                                 number_id=number_id, detail=detail)
    except NotFound:
        return ConsentOutcome("opt_out")


async def record_initial_opt_out(conn: Connection, church_id: UUID, member_id: UUID,
                                 source: str, detail: str) -> None:
    """The ledger row of a member created opted out (no event: no screen shows the member
    yet, and the member row was written opted out by its creator)."""
    await members_q.insert_consent(conn, church_id, member_id, "opt_out", source,
                                   detail=detail)


async def drop_cached_pages(redis: aioredis.Redis, church_id: UUID,
                            group_ids: list[UUID]) -> None:
    """After the commit of a change: drop the cached member pages of the member's groups."""
    await invalidate_group_pages(redis, church_id, group_ids)
    await forget_summary(redis, church_id)  # opted_in of the usage summary


async def assert_member_textable(conn: Connection, church_id: UUID, member_id: UUID) -> None:
    """Raise RecipientOptedOut (409) for an opted-out member: every send checks this."""
    row = await members_q.get_member(conn, church_id, member_id)
    if row is not None and (not row["opt_in_sms"] or row["opted_out_at"] is not None):
        raise RecipientOptedOut()
