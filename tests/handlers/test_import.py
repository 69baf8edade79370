"""CSV import: mixed rows, broken headers, encodings, duplicates, re-import, 50 000 rows."""
from __future__ import annotations

from typing import Any

import pytest

from tests.factories import add_user, register

IMPORT = "/api/v1/members/import"
CSV = {"Content-Type": "text/csv"}


async def _import(api: Any, token: str, body: bytes, status: int = 200) -> dict[str, Any]:
    code, data, _ = await api.post(IMPORT, body=body, headers=CSV, token=token)
    assert code == status, data
    return data


async def _members(api: Any, token: str, **params: Any) -> list[dict[str, Any]]:
    code, data, _ = await api.get("/api/v1/members", token=token,
                                  params={"limit": 200, **params})
    assert code == 200
    return data["data"]


@pytest.mark.gen_test(timeout=60)
async def test_mixed_good_and_bad_rows(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    body = (
        "first_name,last_name,phone,email,groups\r\n"
        "Ada,Lovelace,(415) 555-2671,ada@example.org,Choir;Youth\r\n"
        "Bad,Phone,555-12,,\r\n"
        ",NoFirst,4155552672,,\r\n"
        "\r\n"
        '"Grace ""Amazing""","Hopper, Jr.",415.555.2673,,choir\r\n'
        "Too,Many,4155552674,,,extra\r\n"
        'Multi,"Line\nName",4155552675,,\r\n'
        "Bad,Email,4155552676,not-an-email,\r\n"
        "Last,Row,+1 415 555 2677,,"  # no final newline
    ).encode()
    data = (await _import(api, token, body))["data"]
    assert (data["created"], data["updated"]) == (4, 0)
    assert data["skipped"] == 4
    assert [(e["row"], e["field"]) for e in data["errors"]] == [
        (3, "phone"), (4, "first_name"), (6, "row"), (8, "email")]
    members = {m["phone"]: m for m in await _members(api, token)}
    assert set(members) == {"+14155552671", "+14155552673", "+14155552675", "+14155552677"}
    grace = members["+14155552673"]
    assert (grace["first_name"], grace["last_name"]) == ('Grace "Amazing"', "Hopper, Jr.")
    assert members["+14155552675"]["last_name"] == "Line\nName"
    assert sorted(g["name"] for g in members["+14155552671"]["groups"]) == ["Choir", "Youth"]
    assert [g["name"] for g in grace["groups"]] == ["Choir"]  # matched case-insensitively
    code, groups, _ = await api.get("/api/v1/groups", token=token)
    assert sorted((g["name"], g["member_count"]) for g in groups["data"]) == [
        ("Choir", 2), ("Youth", 1)]
    # Phones never appear in the error list.
    assert "555" not in str(data["errors"])


@pytest.mark.gen_test(timeout=60)
async def test_reimport_changes_nothing_and_updates_are_counted(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    body = b"phone,first_name,last_name,email,groups\n4155550001,A,One,a@x.org,G1\n" \
           b"4155550002,B,Two,,\n"
    first = (await _import(api, token, body))["data"]
    assert (first["created"], first["updated"], first["skipped"]) == (2, 0, 0)
    again = (await _import(api, token, body))["data"]
    assert again == {"created": 0, "updated": 0, "skipped": 2, "errors": []}
    changed = b"first_name,last_name,phone,email,groups\nAnn,One,4155550001,,\n" \
              b"B,Two,4155550002,,G1\nC,Three,4155550003,,\n"
    result = (await _import(api, token, changed))["data"]
    assert (result["created"], result["updated"], result["skipped"]) == (1, 2, 0)
    members = {m["phone"]: m for m in await _members(api, token)}
    assert members["+14155550001"]["first_name"] == "Ann"
    assert members["+14155550001"]["email"] == "a@x.org"  # a blank cell keeps the email
    assert [g["name"] for g in members["+14155550002"]["groups"]] == ["G1"]
    # Imports never change consent.
    await api.patch(f"/api/v1/members/{members['+14155550003']['id']}",
                    json={"opt_in_sms": False}, token=token)
    await _import(api, token, changed)
    assert len(await _members(api, token, opted_in="false")) == 1


@pytest.mark.gen_test(timeout=60)
async def test_duplicate_phones_in_one_file(api: Any) -> None:
    owner = await register(api)
    body = b"first_name,last_name,phone\nA,One,4155550001\nB,Two,(415) 555-0001\n" \
           b"C,Three,4155550002\n"
    data = (await _import(api, owner["access_token"], body))["data"]
    assert data["created"] == 2
    assert data["errors"] == [{"row": 3, "field": "phone", "message":
                               "The same phone number is on row 2; only that row was used."}]
    members = await _members(api, owner["access_token"])
    assert sorted(m["first_name"] for m in members) == ["A", "C"]


BROKEN_HEADERS = [
    b"first_name,last_name\nA,B\n",
    b"first_name,last_name,phone,nickname\nA,B,4155550001,x\n",
    b"first_name,first_name,last_name,phone\nA,A,B,4155550001\n",
    b"name,surname,mobile\nA,B,4155550001\n",
    b"",
    b"\n\n",
    b"first_\xff_name,last_name,phone\nA,B,4155550001\n",
    b'"first_name,last_name,phone\nA,B,4155550001\n',
]


@pytest.mark.gen_test(timeout=60)
async def test_broken_header_saves_nothing(api: Any) -> None:
    owner = await register(api)
    for body in BROKEN_HEADERS:
        data = await _import(api, owner["access_token"], body, status=422)
        assert data["error"]["code"] == "validation_failed", body
        assert data["error"]["details"][0]["field"] == "header", body
    assert await _members(api, owner["access_token"]) == []
    code, groups, _ = await api.get("/api/v1/groups", token=owner["access_token"])
    assert groups["data"] == []


@pytest.mark.gen_test(timeout=60)
async def test_non_utf8_rows_and_malformed_csv(api: Any) -> None:
    owner = await register(api)
    body = (b"\xef\xbb\xbffirst_name,last_name,phone\n"
            b"Jos\xe9,Latin1,4155550001\n"          # Latin-1, not UTF-8
            b"Jos\xc3\xa9,Utf8,4155550002\n"
            b'Bad,"quote"x,4155550003\n'             # text after a closing quote
            b'Open,"never closed,4155550004\n')      # unterminated quote at the end
    data = (await _import(api, owner["access_token"], body))["data"]
    assert data["created"] == 1
    assert [(e["row"], e["field"]) for e in data["errors"]] == [
        (2, "row"), (4, "row"), (5, "row")]
    assert "UTF-8" in data["errors"][0]["message"]
    members = await _members(api, owner["access_token"])
    assert [m["first_name"] for m in members] == ["José"]


@pytest.mark.gen_test(timeout=60)
async def test_access_and_content_type(api: Any) -> None:
    owner = await register(api)
    staff = await add_user(api, owner["access_token"], "staff")
    body = b"first_name,last_name,phone\nA,B,4155550001\n"
    data = await _import(api, staff["access_token"], body, status=403)
    assert data["error"]["code"] == "forbidden"
    await _import(api, "", body, status=401)
    code, data, _ = await api.post(IMPORT, body=body, token=owner["access_token"],
                                   headers={"Content-Type": "application/json"})
    assert code == 422 and data["error"]["details"][0]["field"] == "Content-Type"
    assert await _members(api, owner["access_token"]) == []


@pytest.mark.gen_test(timeout=60)
async def test_import_invalidates_cached_group_pages(api: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    await _import(api, token, b"first_name,last_name,phone,groups\nA,One,4155550001,Choir\n")
    code, groups, _ = await api.get("/api/v1/groups", token=token)
    path = f"/api/v1/groups/{groups['data'][0]['id']}/members"
    code, page, _ = await api.get(path, token=token)
    assert [m["first_name"] for m in page["data"]] == ["A"]  # now cached
    await _import(api, token, b"first_name,last_name,phone,groups\nAnn,One,4155550001,\n"
                              b"B,Two,4155550002,choir\n")
    code, page, _ = await api.get(path, token=token)
    assert sorted(m["first_name"] for m in page["data"]) == ["Ann", "B"]


def _big_csv(rows: int) -> bytes:
    lines = ["first_name,last_name,phone,email,groups"]
    for i in range(rows):
        # 212-2xx-xxxx: valid New York numbers, all distinct.
        lines.append(f"First{i},Last{i},212{2000000 + i:07d},p{i}@example.org,"
                     f"Group{i % 10}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.gen_test(timeout=600)
async def test_fifty_thousand_rows_end_to_end(api: Any, deps: Any) -> None:
    owner = await register(api)
    body = _big_csv(50_000)
    data = (await _import(api, owner["access_token"], body))["data"]
    assert data == {"created": 50_000, "updated": 0, "skipped": 0, "errors": []}
    count = await deps.db.fetch_one("SELECT count(*) AS n FROM members")
    assert count["n"] == 50_000
    code, groups, _ = await api.get("/api/v1/groups", token=owner["access_token"])
    assert sorted(g["member_count"] for g in groups["data"]) == [5_000] * 10
    # One row past the limit is refused, the first 50 000 are read.
    data = (await _import(api, owner["access_token"],
                          body + b"Extra,Row,2125550100,,\n"))["data"]
    assert (data["created"], data["updated"], data["skipped"]) == (0, 0, 50_001)
    assert data["errors"] == [{"row": 50_002, "field": "row", "message":
                               "Only 50000 rows are imported per request; this row and "
                               "the rest were not imported."}]
