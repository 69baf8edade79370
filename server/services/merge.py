"""Merge fields for sends (server/sms/merge_fields.py): validation, per-recipient text, the
longest merged text of an audience for the segment and cost estimate, and the preview.

Texts are merged when they are sent: a reply when it is accepted (one recipient, stored as
sent), a group send's text per recipient by the dispatcher (server/services/dispatch.py).
The broadcast row keeps the text as written, with its fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from db.engine import Connection, Database
from db.queries import broadcasts as bq
from db.queries import churches as cq
from server.platform.errors import ValidationFailed
from server.platform.settings import Settings
from server.sms import merge_fields
from server.sms.segments import SegmentInfo, segment_info

# Audience members read to find the longest merged text, per kind of candidate (longest
# names, non-ASCII names, empty names): the estimate stays cheap for any audience size.
CANDIDATES = 50
PREVIEW_SAMPLES = 3  # recipients shown with their own text in the preview


def check_body(body: str, path: str = "$.body") -> list[str]:
    """The fields `body` uses; an unknown one is a 422 naming it."""
    try:
        return merge_fields.fields_used(body)
    except merge_fields.UnknownMergeField as exc:
        known = ", ".join(f"{{{name}}}" for name in merge_fields.FIELDS)
        raise ValidationFailed.field(
            path, f"Unknown merge field {{{exc.field}}}. Use {known}; "
                  "write {{ and }} for literal braces.") from None


async def church_name(conn: Connection, church_id: UUID) -> str:
    church = await cq.get_church(conn, church_id)
    return church["name"] if church else ""


def for_member(body: str, first_name: str | None, last_name: str | None,
               church: str | None) -> str:
    """`body` merged for one recipient."""
    return merge_fields.render(body, merge_fields.member_values(first_name, last_name, church))


@dataclass(frozen=True)
class Longest:
    text: str  # the longest merged text (the body itself when it has no fields)
    info: SegmentInfo


def _size(info: SegmentInfo, text: str) -> tuple[int, int, int]:
    return (info.segments, info.encoding == "UCS-2", len(text))


async def longest_text(conn: Connection, church_id: UUID, body: str,
                       group_ids: list[UUID], member_ids: list[UUID]) -> Longest:
    """The audience's longest merged text and its segments: what the estimate charges."""
    if not merge_fields.fields_used(body):
        return Longest(merge_fields.render(body, {}), segment_info(body))
    church = await church_name(conn, church_id)
    rows = await bq.list_merge_candidates(conn, church_id, group_ids, member_ids, CANDIDATES)
    texts = [for_member(body, r["first_name"], r["last_name"], church) for r in rows] or \
        [for_member(body, None, None, church)]
    best = max(((t, segment_info(t)) for t in texts), key=lambda p: _size(p[1], p[0]))
    return Longest(best[0], best[1])


async def preview(db: Database, settings: Settings, church_id: UUID, body: str,
                  group_ids: list[UUID], member_ids: list[UUID]) -> dict[str, Any]:
    """POST /messages/preview: the recipients' count, the longest merged text with its
    segments and estimated cost, and a few recipients' own texts."""
    check_body(body)
    async with db.acquire() as conn:
        if not group_ids and not member_ids:
            raise ValidationFailed.field("$.group_ids", "Name at least one group or member.")
        for kind, ids, path in (("groups", group_ids, "$.group_ids"),
                                ("members", member_ids, "$.member_ids")):
            missing = await bq.unknown_ids(conn, church_id, kind, ids)
            if missing:  # another church's id too: it is not one of ours
                raise ValidationFailed.field(path, f"Unknown {kind[:-1]} id {missing[0]}.")
        count = await bq.count_audience(conn, church_id, group_ids, member_ids)
        longest = await longest_text(conn, church_id, body, group_ids, member_ids)
        church = await church_name(conn, church_id)
        samples = await bq.list_audience_by_name(conn, church_id, group_ids, member_ids,
                                                 PREVIEW_SAMPLES)
    cost = (Decimal(str(settings.price_per_segment_cents)) * longest.info.segments * count
            ).quantize(Decimal("0.01"))
    return {
        "recipient_count": count, "fields": merge_fields.fields_used(body),
        "longest": {"body": longest.text, "segments": longest.info.segments,
                    "encoding": longest.info.encoding},
        "estimated_cost_cents": float(cost),
        "samples": [{"member_id": str(r["id"]), "first_name": r["first_name"],
                     "last_name": r["last_name"],
                     "body": for_member(body, r["first_name"], r["last_name"], church)}
                    for r in samples],
    }
