"""Merge fields (server/sms/merge_fields.py, server/services/merge.py) and the last-four
phone search (keyed hash, backfilled by `ywm index-phones`)."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from server.platform import crypto
from server.platform.errors import ValidationFailed
from server.services import members, merge, phone_search
from server.sms import merge_fields
from tests.workers.bulk import seed_church, sql

VALUES = merge_fields.member_values("Ada", "Moss", "Hope Church")
EMPTY = merge_fields.member_values("", None, "Hope Church")

CASES = [
    # text, merged for Ada Moss, merged for a member without a name
    ("Hi {first_name}!", "Hi Ada!", "Hi friend!"),
    ("Hi {first_name|there}!", "Hi Ada!", "Hi there!"),
    ("Hi { First_Name | you }", "Hi Ada", "Hi you"),
    ("{first_name} {last_name}", "Ada Moss", "friend "),
    ("{last_name|(no surname)}", "Moss", "(no surname)"),
    ("{church_name} says hi", "Hope Church says hi", "Hope Church says hi"),
    ("Use {{code}} and }} and {{", "Use {code} and } and {", "Use {code} and } and {"),
    ("A lone { or } stays", "A lone { or } stays", "A lone { or } stays"),
    ("No fields at all", "No fields at all", "No fields at all"),
    ("{first_name|}", "Ada", ""),
]


@pytest.mark.parametrize("text, full, empty", CASES)
def test_render_with_fallbacks_and_defaults(text: str, full: str, empty: str) -> None:
    assert merge_fields.render(text, VALUES) == full
    assert merge_fields.render(text, EMPTY) == empty


@pytest.mark.parametrize("text, unknown", [
    ("Hi {frist_name}", "frist_name"), ("{first_name} {nick|pal}", "nick"),
    ("Hi {}", ""), ("{first name}", "first name"), ("Total: {{x}} {y}", "y")])
def test_unknown_fields_are_named(text: str, unknown: str) -> None:
    with pytest.raises(merge_fields.UnknownMergeField) as caught:
        merge_fields.fields_used(text)
    assert caught.value.field == unknown
    with pytest.raises(ValidationFailed) as failed:
        merge.check_body(text)
    assert failed.value.details == [{"field": "$.body", "message": failed.value.details[0][
        "message"]}]
    assert f"{{{unknown}}}" in failed.value.message


def test_fields_used_in_order_once() -> None:
    assert merge_fields.fields_used("{church_name}: hi {first_name}, {FIRST_NAME|x}") == [
        "church_name", "first_name"]
    assert merge_fields.fields_used("{{first_name}}") == []


@pytest.mark.gen_test(timeout=30)
async def test_longest_text_over_an_audience(deps: Any) -> None:
    church = seed_church(deps.settings, members=60)
    long_id, accented_id = church.member_ids[7], church.member_ids[30]
    sql(deps.settings, "UPDATE members SET first_name = 'Maximilian-Alexander' WHERE id = %s",
        (long_id,))
    body = "Hi {first_name}! " + "x" * 130
    async with deps.db.acquire() as conn:
        longest = await merge.longest_text(conn, church.id, body, [church.group_id], [])
    assert longest.text == "Hi Maximilian-Alexander! " + "x" * 130
    assert (longest.info.encoding, longest.info.segments) == ("GSM-7", 1)
    # A short name outside GSM-7 outweighs a long ASCII one: UCS-2 needs more segments.
    sql(deps.settings, "UPDATE members SET first_name = 'Zoë' WHERE id = %s", (accented_id,))
    async with deps.db.acquire() as conn:
        longest = await merge.longest_text(conn, church.id, body, [church.group_id], [])
    assert longest.text.startswith("Hi Zoë!") and longest.info == ("UCS-2", 3)
    # Opted-out members are not in the audience, so not in the estimate.
    sql(deps.settings, "UPDATE members SET opt_in_sms = false, opted_out_at = now() "
                       "WHERE id = %s", (accented_id,))
    async with deps.db.acquire() as conn:
        longest = await merge.longest_text(conn, church.id, body, [church.group_id], [])
    assert longest.info.encoding == "GSM-7"


@pytest.mark.gen_test(timeout=30)
async def test_last_four_search_and_the_backfill(deps: Any) -> None:
    # Members written straight to SQL, as before migration 0008: no last-four hash yet.
    church = seed_church(deps.settings, members=5)
    other = seed_church(deps.settings, members=2, block=1)
    last4 = church.phones[3][-4:]
    assert sql(deps.settings, "SELECT count(*) FROM members "
                              "WHERE phone_last4_hash IS NULL")[0][0] == 7
    items, _, total = await members.list_members(deps.db, deps.settings, church.id, 50,
                                                 query=last4)
    assert (items, total) == ([], 0)
    assert await phone_search.index_phones(deps.db, deps.settings, batch_size=2) == 7
    assert await phone_search.index_phones(deps.db, deps.settings) == 0  # nothing left
    items, _, total = await members.list_members(deps.db, deps.settings, church.id, 50,
                                                 query=last4)
    assert [m["id"] for m in items] == [str(church.member_ids[3])] and total == 1
    # The stored value is the church-bound keyed hash of the last four digits.
    stored = sql(deps.settings, "SELECT phone_last4_hash FROM members WHERE id = %s",
                 (church.member_ids[3],))[0][0]
    assert bytes(stored) == crypto.phone_last4_hash(deps.settings, church.id, church.phones[3])
    assert crypto.phone_last4_hash(deps.settings, other.id, church.phones[3]) != bytes(stored)
    assert crypto.phone_last4_hash(deps.settings, church.id, "12") is None


def test_index_phones_command(settings: Any, clean: None) -> None:
    seed_church(settings, members=3)
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "YWM_LOG_LEVEL": "WARNING"}  # the development keys, as the test settings use
    # Real processes, as an operator runs them: `ywm migrate` fills what is missing, and
    # `ywm index-phones` (the same step alone) then finds nothing left.
    for command, said in ((["migrate"], "3 member phones indexed for search"),
                          (["index-phones"], "0 members made searchable")):
        done = subprocess.run([sys.executable, "-m", "server.cli", *command], env=env,
                              capture_output=True, text=True, timeout=120,
                              cwd=pathlib.Path(__file__).parents[2])
        assert done.returncode == 0, done.stderr
        assert said in done.stdout, done.stdout
    assert sql(settings, "SELECT count(*) FROM members WHERE phone_last4_hash IS NULL") == [(0,)]
