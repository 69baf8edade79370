"""The consent service: whoever reports an opt-out (a STOP text, the carrier, staff), the
member row, one consent_ledger row and one `member.opted_out` event of one shape change
together, and a repeat changes nothing."""
from __future__ import annotations

from typing import Any, Awaitable, Callable
from uuid import UUID

import pytest

from server.services import consent, members
from tests.factories import create_church
from tests.factories_inbox import add_number, random_phone, text_in

# The payload every member.opted_out / member.opted_in carries (server/events/types.py).
CONSENT_KEYS = {"member_id", "source", "keyword", "number_id", "opted_out_at"}


async def _by_keyword(deps: Any, church_id: UUID, number: dict[str, Any], phone: str,
                      member_id: UUID) -> None:
    await text_in(deps, number, phone, "STOP")


async def _by_carrier(deps: Any, church_id: UUID, number: dict[str, Any], phone: str,
                      member_id: UUID) -> None:
    async with deps.db.transaction() as conn:
        await consent.record_carrier_opt_out(conn, church_id, UUID(str(number["id"])), member_id,
                                             "carrier error 40300")


async def _by_staff(deps: Any, church_id: UUID, number: dict[str, Any], phone: str,
                    member_id: UUID) -> None:
    view = await members.update_member(deps.db, deps.redis, deps.settings, church_id,
                                       member_id, {"opt_in_sms": False})
    assert view["opt_in_sms"] is False and view["opted_out_at"] is not None


OptOut = Callable[[Any, UUID, dict[str, Any], str, UUID], Awaitable[None]]
SOURCES: list[tuple[str, OptOut, str | None, bool]] = [
    # source, how it is reported, keyword, names the number
    ("keyword", _by_keyword, "stop", True),  # the keyword as matched (lower case)
    ("carrier", _by_carrier, None, True),
    ("staff", _by_staff, None, False),
]


async def _consent_rows(deps: Any, church_id: UUID) -> tuple[list[Any], list[Any]]:
    events = await deps.db.fetch_all(
        "SELECT type, data FROM events WHERE church_id = %(c)s AND type LIKE 'member.%%' "
        "ORDER BY id", {"c": church_id})
    ledger = await deps.db.fetch_all(
        "SELECT action, source FROM consent_ledger WHERE church_id = %(c)s "
        "ORDER BY created_at", {"c": church_id})
    return ([(r["type"], r["data"]) for r in events],
            [(r["action"], r["source"]) for r in ledger])


@pytest.mark.parametrize("source, opt_out, keyword, names_number", SOURCES,
                         ids=[case[0] for case in SOURCES])
@pytest.mark.gen_test(timeout=30)
async def test_every_source_changes_consent_the_same_way(
        deps: Any, source: str, opt_out: OptOut, keyword: str | None,
        names_number: bool) -> None:
    church_id = UUID(str((await create_church(deps))["church_id"]))
    number = await add_number(deps, church_id)
    phone = random_phone()
    first = await text_in(deps, number, phone)
    member_id = UUID(first.events[0]["data"]["conversation"]["member"]["id"])

    await opt_out(deps, church_id, number, phone, member_id)
    await opt_out(deps, church_id, number, phone, member_id)  # a repeat changes nothing

    events, ledger = await _consent_rows(deps, church_id)
    assert ledger == [("opt_out", source)]
    [(kind, data)] = events
    assert kind == "member.opted_out" and set(data) == CONSENT_KEYS
    assert data["member_id"] == str(member_id) and data["source"] == source
    assert data["keyword"] == keyword and data["opted_out_at"]
    assert data["number_id"] == (str(number["id"]) if names_number else None)
    row = await deps.db.fetch_one("SELECT opt_in_sms, opted_out_at FROM members "
                                  "WHERE id = %(m)s", {"m": member_id})
    assert row["opt_in_sms"] is False and row["opted_out_at"] is not None


@pytest.mark.gen_test(timeout=30)
async def test_staff_opt_in_clears_the_opt_out_with_its_event(deps: Any) -> None:
    church_id = UUID(str((await create_church(deps))["church_id"]))
    number = await add_number(deps, church_id)
    first = await text_in(deps, number, random_phone(), "STOP")
    member_id = UUID(first.events[0]["data"]["conversation"]["member"]["id"])

    view = await members.update_member(deps.db, deps.redis, deps.settings, church_id,
                                       member_id, {"opt_in_sms": True, "first_name": "Ann"})

    assert view["opt_in_sms"] is True and view["opted_out_at"] is None
    assert view["first_name"] == "Ann"
    events, ledger = await _consent_rows(deps, church_id)
    assert ledger == [("opt_out", "keyword"), ("opt_in", "staff")]
    assert events[-1] == ("member.opted_in", {
        "member_id": str(member_id), "source": "staff", "keyword": None, "number_id": None,
        "opted_out_at": None})


@pytest.mark.gen_test(timeout=30)
async def test_carrier_opt_out_of_a_deleted_member_marks_nothing(deps: Any) -> None:
    church_id = UUID(str((await create_church(deps))["church_id"]))
    number = await add_number(deps, church_id)
    first = await text_in(deps, number, random_phone())
    member_id = UUID(first.events[0]["data"]["conversation"]["member"]["id"])
    await members.delete_member(deps.db, deps.redis, church_id, member_id)

    async with deps.db.transaction() as conn:
        outcome = await consent.record_carrier_opt_out(conn, church_id, None, member_id,
                                                       "carrier error 21610")

    assert outcome.changed is False and outcome.events == []
    assert await _consent_rows(deps, church_id) == ([], [])
