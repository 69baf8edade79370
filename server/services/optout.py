"""Opt-out and opt-in use cases: keywords from inbound texts, carrier signals, send checks.

Every change of consent is a consent_ledger row (member, number, source, keyword, time)
written in the caller's transaction, with a `member.opted_out`/`member.opted_in` event.
At most one confirmation reply per change, and none when the number's provider already
auto-replies (`numbers.provider_handles_opt_out`). HELP always gets the church's help
text (unless the provider answers it). Non-exact intents ("stop texting me") change
nothing automatically: they are recorded as action `review` for staff.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from db.engine import Connection
from db.queries import members as members_q
from server.platform.errors import RecipientOptedOut
from server.events.log import append_event
from server.sms.keywords import keyword_action
from server.services import members

STOP_CONFIRMATION = ("{church}: you are unsubscribed and will get no more texts from this "
                     "number. Reply START to resubscribe.")
START_CONFIRMATION = ("{church}: you are subscribed again. Reply HELP for help, "
                      "STOP to unsubscribe.")


@dataclass
class ConsentOutcome:
    action: str | None = None            # opt_out | opt_in | help | review | None
    changed: bool = False
    reply: str | None = None             # confirmation text to queue, if any
    events: list[dict[str, Any]] = field(default_factory=list)
    group_ids: list[UUID] = field(default_factory=list)  # caches to drop after commit


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
    return await set_consent(conn, church, number_id, member_id, action == "opt_in",
                             source="keyword", keyword=keyword,
                             confirm=not carrier_replies)


async def set_consent(conn: Connection, church: dict[str, Any], number_id: UUID | None,
                      member_id: UUID, opted_in: bool, source: str,
                      keyword: str | None = None, detail: str | None = None,
                      confirm: bool = False) -> ConsentOutcome:
    """Opt in or out; ledger row, event and confirmation only when the state changed."""
    result = await members.set_opt_in(conn, church["id"], member_id, opted_in, source,
                                      keyword=keyword, number_id=number_id, detail=detail)
    action = "opt_in" if opted_in else "opt_out"
    outcome = ConsentOutcome(action, changed=result["changed"],
                             group_ids=list(result["group_ids"]))
    if not result["changed"]:
        return outcome
    outcome.events.append(await append_event(
        conn, church["id"], "member.opted_in" if opted_in else "member.opted_out",
        {"member_id": member_id, "source": source, "keyword": keyword,
         "number_id": number_id, "opted_out_at": result["opted_out_at"]}))
    if confirm:
        template = START_CONFIRMATION if opted_in else STOP_CONFIRMATION
        outcome.reply = template.format(church=church["name"])
    return outcome


async def record_carrier_opt_out(conn: Connection, church: dict[str, Any],
                                 number_id: UUID | None, member_id: UUID, code: str
                                 ) -> ConsentOutcome:
    """Telnyx 40300 / Twilio 21610: the carrier already blocks; mirror it, no reply."""
    return await set_consent(conn, church, number_id, member_id, False, source="carrier",
                             detail=f"carrier error {code}")


async def assert_member_textable(conn: Connection, church_id: UUID, member_id: UUID) -> None:
    """Raise RecipientOptedOut (409) for an opted-out member: every send checks this."""
    row = await members_q.get_member(conn, church_id, member_id)
    if row is not None and (not row["opt_in_sms"] or row["opted_out_at"] is not None):
        raise RecipientOptedOut()
