"""Member services other areas call, key rotation (service and CLI), the import parser."""
from __future__ import annotations

import base64
import os
import pathlib
import subprocess
import sys
import uuid
from typing import Any

import psycopg2
import pytest

from server.platform import crypto
from server.services import consent, key_rotation, members
from server.services.member_import import MemberImport
from tests.factories import create_church


def _key(seed: int) -> str:
    return base64.b64encode(bytes([seed]) * 32).decode()


@pytest.mark.gen_test(timeout=30)
async def test_find_or_create_and_set_consent_inside_a_transaction(deps: Any) -> None:
    church = await create_church(deps)
    church_id = church["church_id"]
    async with deps.db.transaction() as conn:
        first = await members.find_or_create_member_by_phone(
            conn, deps.settings, church_id, "+14155552671", opt_in=False)
        again = await members.find_or_create_member_by_phone(
            conn, deps.settings, church_id, "+14155552671", opt_in=True)
    assert first["created"] is True and again["created"] is False
    assert again["id"] == first["id"] and again["phone"] == "+14155552671"
    assert first["opt_in_sms"] is False and first["opted_out_at"] is not None

    async with deps.db.transaction() as conn:
        result = await consent.set_consent(conn, church_id, first["id"], True, "keyword",
                                           keyword="START")
        repeat = await consent.set_consent(conn, church_id, first["id"], True, "keyword",
                                           keyword="START")
    assert result.changed is True and result.opt_in_sms is True
    assert result.opted_out_at is None
    assert repeat.changed is False and repeat.events == []
    ledger = await deps.db.fetch_all(
        "SELECT action, source, keyword FROM consent_ledger ORDER BY created_at")
    assert [(r["action"], r["source"], r["keyword"]) for r in ledger] == [
        ("opt_out", "inbound", None), ("opt_in", "keyword", "START")]
    # The change's one event, in the shape every source gives it (server/events/types.py).
    assert [(e["type"], e["data"]) for e in result.events] == [
        ("member.opted_in", {"member_id": str(first["id"]), "source": "keyword",
                             "keyword": "START", "number_id": None, "opted_out_at": None})]

    # Rolled back with the caller's transaction: nothing is committed on its own.
    class Abort(Exception):
        pass
    with pytest.raises(Abort):
        async with deps.db.transaction() as conn:
            await members.find_or_create_member_by_phone(
                conn, deps.settings, church_id, "+14155552672", opt_in=True)
            raise Abort()
    count = await deps.db.fetch_one("SELECT count(*) AS n FROM members")
    assert count["n"] == 1

    other = await create_church(deps, "Other")
    async with deps.db.transaction() as conn:
        with pytest.raises(Exception, match="No such member"):
            await consent.set_consent(conn, other["church_id"], first["id"], False, "keyword")


@pytest.mark.gen_test(timeout=60)
async def test_rotate_keys_keeps_every_row_readable(deps: Any) -> None:
    old = deps.settings.replace(field_keys=f"k1:{_key(1)}")
    new = deps.settings.replace(field_keys=f"k2:{_key(2)},k1:{_key(1)}")
    church = await create_church(deps)
    async with deps.db.transaction() as conn:
        for i in range(12):
            await members.find_or_create_member_by_phone(
                conn, old, church["church_id"], f"+1415555{1000 + i}", opt_in=True)
    await deps.db.execute("UPDATE members SET email_enc = %(e)s",
                          {"e": crypto.encrypt(old, "same@example.org",
                                               crypto.member_email(church["church_id"]))})
    # A send accepted before the rotation holds copies of the phones (message_recipients).
    await deps.db.execute(
        "INSERT INTO message_recipients (church_id, message_id, member_id, phone_enc, "
        "phone_hash) SELECT church_id, %(message)s, id, phone_enc, phone_hash FROM members",
        {"message": uuid.uuid4()})
    result = await key_rotation.rotate_keys(deps.db, new, deps.redis, batch_size=5)
    assert result == {"key_id": "k2", "rotated": 12, "recipients_rotated": 12,
                      "events_rotated": 0, "webhook_values_rotated": 0,
                      "caches_dropped": 0, "remaining": 0}
    only_new = deps.settings.replace(field_keys=f"k2:{_key(2)}")
    at_phone = crypto.member_phone(church["church_id"])
    rows = await deps.db.fetch_all("SELECT phone_enc, email_enc FROM members")
    phones = sorted(crypto.decrypt(only_new, r["phone_enc"], at_phone) for r in rows)
    assert phones == [f"+1415555{1000 + i}" for i in range(12)]
    assert {crypto.decrypt(only_new, r["email_enc"], crypto.member_email(church["church_id"]))
            for r in rows} == {"same@example.org"}
    copies = await deps.db.fetch_all("SELECT phone_enc FROM message_recipients")
    assert sorted(crypto.decrypt(only_new, r["phone_enc"], at_phone) for r in copies) == phones
    again = await key_rotation.rotate_keys(deps.db, new, deps.redis)
    assert (again["rotated"], again["recipients_rotated"]) == (0, 0)


def test_rotate_keys_command(settings: Any, clean: None) -> None:
    old = settings.replace(field_keys=f"k1:{_key(1)}")
    conn = psycopg2.connect(settings.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("INSERT INTO churches (name) VALUES ('C') RETURNING id")
        church_id = cur.fetchone()[0]
        for i in range(3):
            phone = f"+1415555{2000 + i}"
            cur.execute("INSERT INTO members (church_id, phone_enc, phone_hash) "
                        "VALUES (%s, %s, %s)",
                        (church_id, crypto.encrypt(old, phone, crypto.member_phone(church_id)),
                         crypto.phone_hash(old, phone)))
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "YWM_FIELD_KEYS": f"k2:{_key(2)},k1:{_key(1)}", "YWM_LOG_LEVEL": "WARNING"}
    # A real process, as an operator runs it (asyncio.run would clash with the test loop).
    done = subprocess.run([sys.executable, "-m", "server.cli", "rotate-keys", "--batch-size",
                           "2"], env=env, capture_output=True, text=True, timeout=60,
                          cwd=pathlib.Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "3 member rows, 0 recipient rows and 0 values in events re-encrypted under key " \
        "k2; 0 cached values dropped; 0 still" in done.stdout
    with conn.cursor() as cur:
        cur.execute("SELECT phone_enc FROM members")
        assert {crypto.key_id_of(bytes(r[0])) for r in cur.fetchall()} == {"k2"}
    conn.close()


@pytest.mark.gen_test(timeout=60)
async def test_import_parser_is_independent_of_chunk_boundaries(deps: Any) -> None:
    church = await create_church(deps)
    body = ('first_name,last_name,phone,groups\r\n'
            'A,"Multi\r\nLine, with ""quotes""",4155550001,G\r\n'
            'Bad,Row,12,\r\n'
            'Jos\u00e9,\u00dcml\u00e4ut,4155550002,"G;H"\r\n').encode()
    results = []
    for size in (1, 2, 7, len(body)):
        importer = MemberImport(deps.db, deps.redis, deps.settings, church["church_id"])
        for start in range(0, len(body), size):
            await importer.feed(body[start:start + size])
        results.append((await importer.finish()).public())
    assert results[0]["created"] == 2 and results[0]["errors"][0]["row"] == 3
    # Later passes re-import the same rows: identical outcome apart from created/skipped.
    for later in results[1:]:
        assert later == {"created": 0, "updated": 0, "skipped": 3,
                         "errors": results[0]["errors"]}
    rows = await deps.db.fetch_all("SELECT last_name FROM members ORDER BY last_name")
    assert [r["last_name"] for r in rows] == ['Multi\r\nLine, with "quotes"', "\u00dcml\u00e4ut"]
