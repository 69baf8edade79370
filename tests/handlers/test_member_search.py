"""Finding people: by the last four digits of a phone (a keyed hash, never the phone in
clear), by a whole number or a name, with the total count in `meta.total`."""
from __future__ import annotations

from typing import Any

import pytest

from tests.workers.bulk import seed_church, sql, token_for

M = "/api/v1/members"
PEOPLE = [("Ada", "Moss", "(202) 555-2671"), ("Ben", "Oaks", "+1 415 555 2671"),
          ("Cy", "Pine", "202-555-0103"), ("Dee", "2671", "202-555-0199")]


async def _people(api: Any) -> list[dict[str, Any]]:
    made = []
    for first, last, phone in PEOPLE:
        status, body, _ = await api.post(M, json={"first_name": first, "last_name": last,
                                                  "phone": phone})
        assert status == 201, body
        made.append(body["data"])
    return made


@pytest.mark.gen_test(timeout=30)
async def test_last_four_digits_find_members_and_the_total_counts_them(api: Any,
                                                                        deps: Any) -> None:
    church = seed_church(deps.settings, members=0)
    api.token = await token_for(deps, church)
    ada, ben, cy, dee = await _people(api)
    # No phone is stored in clear: only sealed values and keyed hashes.
    raw = sql(deps.settings, "SELECT phone_enc::text, phone_hash::text, "
                             "phone_last4_hash::text FROM members")
    assert all("2671" not in "".join(r) and "5552671" not in "".join(r) for r in raw)
    assert all(r[2] is not None for r in raw)

    async def search(q: str, **params: Any) -> tuple[list[str], int]:
        status, body, _ = await api.get(M, params={"q": q, **params})
        assert status == 200, body
        return [m["first_name"] for m in body["data"]], body["meta"]["total"]

    # Four digits: the phones ending in them (not a name containing them: an index lookup).
    assert await search("2671") == (["Ben", "Ada"], 2)
    assert await search("٢٦٧١") == (["Ben", "Ada"], 2)  # other scripts' digits
    assert await search("0103") == (["Cy"], 1)
    assert await search("9999") == ([], 0)
    assert await search("(202) 555-2671") == (["Ada"], 1)  # a whole number: exact
    assert await search("oak") == (["Ben"], 1)
    assert await search("Dee") == (["Dee"], 1)
    # The total covers every page; it is counted on the first page only.
    names, total = await search("2671", limit=1)
    assert names == ["Ben"] and total == 2
    status, body, _ = await api.get(M, params={"limit": 2})
    assert len(body["data"]) == 2 and body["meta"]["total"] == 4
    status, body, _ = await api.get(M, params={"limit": 2,
                                               "cursor": body["meta"]["next_cursor"]})
    assert len(body["data"]) == 2 and body["meta"]["total"] is None

    # Kept in step on every write: a changed phone is found by its new ending only.
    status, body, _ = await api.patch(f"{M}/{ada['id']}", json={"phone": "202-555-4444"})
    assert status == 200, body
    assert await search("2671") == (["Ben"], 1)
    assert await search("4444") == (["Ada"], 1)
    # A rename keeps the phone's hash.
    status, body, _ = await api.patch(f"{M}/{ben['id']}", json={"first_name": "Benny"})
    assert await search("2671") == (["Benny"], 1)

    # Another church's members are never found, even with the same last four digits.
    other = seed_church(deps.settings, members=0, block=1)
    other_token = await token_for(deps, other)
    status, body, _ = await api.post(M, json={"first_name": "Eve", "last_name": "Far",
                                              "phone": "303-555-2671"}, token=other_token)
    assert status == 201
    assert await search("2671") == (["Benny"], 1)
    status, body, _ = await api.get(M, params={"q": "2671"}, token=other_token)
    assert [m["first_name"] for m in body["data"]] == ["Eve"] and body["meta"]["total"] == 1
    # The same last four in two churches hash differently (bound to the church).
    hashes = sql(deps.settings, "SELECT church_id, phone_last4_hash FROM members "
                                "WHERE first_name IN ('Eve', 'Dee')")
    assert hashes[0][1] != hashes[1][1]

    # Staff may search; bad filters are 422.
    staff = await token_for(deps, church, role="staff")
    status, body, _ = await api.get(M, params={"q": "4444"}, token=staff)
    assert status == 200 and body["meta"]["total"] == 1
    for params in ({"opted_in": "maybe"}, {"group_id": "nope"}, {"limit": "0"}):
        status, body, _ = await api.get(M, params={"q": "2671", **params})
        assert status == 422, (params, body)


@pytest.mark.gen_test(timeout=30)
async def test_imported_and_inbound_members_are_searchable_by_last_four(api: Any,
                                                                       deps: Any) -> None:
    church = seed_church(deps.settings, members=0)
    api.token = await token_for(deps, church)
    csv = "first_name,last_name,phone\nGus,Lee,202-555-7788\nHal,Ray,202-555-7789\n"
    status, body, _ = await api.request("POST", f"{M}/import", body=csv.encode(),
                                        headers={"Content-Type": "text/csv"})
    assert status == 200 and body["data"]["created"] == 2, body
    status, body, _ = await api.get(M, params={"q": "7788"})
    assert [m["first_name"] for m in body["data"]] == ["Gus"] and body["meta"]["total"] == 1
