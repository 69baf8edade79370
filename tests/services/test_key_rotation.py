"""Ciphertexts bound to where they live, and `ywm rotate-keys` over every sealed value
(issue 10 items 11 and 12): members, recipient copies, phones sealed in the event log and
cached group pages; then the old key is dropped and the stream still replays."""
from __future__ import annotations

import base64
import dataclasses
import os
import uuid
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.app import make_app
from server.events.log import SEALED_MARK, append_event
from server.platform import crypto
from server.services import groups, key_rotation, members
from tests.factories import register
from tests.stream_client import close_sockets, open_stream, read_frame, read_frames

__all__ = ["close_sockets"]
K1, K2 = bytes([1]) * 32, bytes([2]) * 32
OLD_KEYS = f"k1:{base64.b64encode(K1).decode()}"
BOTH_KEYS = f"k2:{base64.b64encode(K2).decode()},{OLD_KEYS}"
NEW_KEYS = f"k2:{base64.b64encode(K2).decode()}"
M = "/api/v1/members"


def _unbound(key: bytes, key_id: str, text: str) -> bytes:
    """A value sealed before places were bound: header-only associated data."""
    header = bytes([len(key_id)]) + key_id.encode()
    nonce = os.urandom(crypto.NONCE_BYTES)
    return header + nonce + AESGCM(key).encrypt(nonce, text.encode(), header)


@pytest.fixture
def app(deps: Any, request: Any) -> Any:
    # The served process knows only the keys the test names (default: the new key only).
    keys = getattr(request, "param", NEW_KEYS)
    return make_app(dataclasses.replace(deps, settings=deps.settings.replace(
        field_keys=keys)))


@pytest.mark.gen_test(timeout=60)
async def test_a_ciphertext_copied_to_another_church_does_not_decrypt(api: Any,
                                                                      deps: Any) -> None:
    new = deps.settings.replace(field_keys=NEW_KEYS)
    a, b = await register(api, "A"), await register(api, "B")
    status, ada, _ = await api.post(M, json={"first_name": "Ada", "last_name": "L",
                                                  "phone": "+14155552671"},
                                    token=a["access_token"])
    assert status == 201, ada
    status, bob, _ = await api.post(M, json={"first_name": "Bob", "last_name": "B",
                                                  "phone": "+14155550000"},
                                    token=b["access_token"])
    assert status == 201, bob
    # Church B's row gets church A's ciphertext (as a bad restore or an attacker would).
    await deps.db.execute(
        "UPDATE members SET phone_enc = (SELECT phone_enc FROM members WHERE id = %(a)s) "
        "WHERE id = %(b)s", {"a": UUID(ada["data"]["id"]), "b": UUID(bob["data"]["id"])})
    status, body, _ = await api.get(f"{M}/{bob['data']['id']}", token=b["access_token"])
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "4155552671" not in str(body)
    # The value itself is intact: in its own place it still reads.
    row = await deps.db.fetch_one("SELECT phone_enc FROM members WHERE id = %(b)s",
                                  {"b": UUID(bob["data"]["id"])})
    assert crypto.decrypt(new, row["phone_enc"], crypto.member_phone(a["church_id"])) \
        == "+14155552671"
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(new, row["phone_enc"], crypto.member_phone(b["church_id"]))
    # Another column of the same church's row fails too.
    await deps.db.execute("UPDATE members SET email_enc = phone_enc WHERE id = %(a)s",
                          {"a": UUID(ada["data"]["id"])})
    status, body, _ = await api.get(f"{M}/{ada['data']['id']}", token=a["access_token"])
    assert status == 500 and "4155552671" not in str(body)


@pytest.mark.gen_test(timeout=90)
async def test_rotation_reseals_everything_then_the_old_key_can_go(
        api: Any, base_url: str, deps: Any) -> None:
    old = deps.settings.replace(field_keys=OLD_KEYS)
    both = deps.settings.replace(field_keys=BOTH_KEYS)
    owner = await register(api)
    church = UUID(str(owner["church_id"]))
    # Written under the old key: a member (phone and email), a send's copy of the phone,
    # a cached group page, events sealed with it, and one event and one member sealed
    # before places were bound at all.
    ada = await members.create_member(deps.db, old, church, {
        "first_name": "Ada", "phone": "+14155552671", "email": "ada@example.org"})
    legacy_member = await members.create_member(deps.db, old, church, {
        "first_name": "Old", "phone": "+14155552672"})
    await deps.db.execute("UPDATE members SET phone_enc = %(p)s WHERE id = %(id)s", {
        "p": _unbound(K1, "k1", "+14155552672"), "id": UUID(legacy_member["id"])})
    await deps.db.execute(
        "INSERT INTO message_recipients (church_id, message_id, member_id, phone_enc, "
        "phone_hash) SELECT church_id, %(message)s, id, phone_enc, phone_hash FROM members",
        {"message": uuid.uuid4()})
    group = await groups.create_group(deps.db, church, "Choir")
    await groups.change_members(deps.db, deps.redis, church, UUID(group["id"]),
                                [ada["id"], legacy_member["id"]], add=True)
    page, _ = await groups.list_group_members(deps.db, deps.redis, old, church,
                                              UUID(group["id"]), 50, None)
    assert {m["phone"] for m in page} == {"+14155552671", "+14155552672"}  # now cached
    legacy_b64 = base64.b64encode(_unbound(K1, "k1", "+14155552673")).decode()
    async with deps.db.transaction() as conn:
        for phone in ("+14155552671", "+14155552672"):
            await append_event(conn, church, "conversation.updated",
                               {"member": {"phone": phone}}, settings=old)
        await append_event(conn, church, "conversation.updated",
                           {"member": {"phone": {SEALED_MARK: legacy_b64}}})

    # Every one of them counts: 2 member rows, 2 recipient rows, 3 values in events and
    # 3 cached values (two phones and an email).
    assert await key_rotation.count_remaining(deps.db, both, deps.redis) == 10

    result = await key_rotation.rotate_keys(deps.db, both, deps.redis, batch_size=2)
    assert result == {"key_id": "k2", "rotated": 2, "recipients_rotated": 2,
                      "events_rotated": 3, "webhook_values_rotated": 0,
                      "caches_dropped": 1, "remaining": 0}
    again = await key_rotation.rotate_keys(deps.db, both, deps.redis)
    assert (again["rotated"], again["events_rotated"], again["remaining"]) == (0, 0, 0)

    # The old key is dropped (the app serves NEW_KEYS only): the stream replays every
    # event with its phone, and members, the group page and recipients still read.
    ws = await open_stream(api, base_url, owner["access_token"], last_event_id="0")
    assert (await read_frame(ws))["type"] == "hello"
    frames = await read_frames(ws, 3)
    assert [f["data"]["member"]["phone"] for f in frames] == [
        "+14155552671", "+14155552672", "+14155552673"]
    token = owner["access_token"]
    status, body, _ = await api.get(f"{M}/{ada['id']}", token=token)
    assert status == 200 and body["data"]["email"] == "ada@example.org"
    status, body, _ = await api.get(f"/api/v1/groups/{group['id']}/members", token=token)
    assert status == 200, body
    assert {m["phone"] for m in body["data"]} == {"+14155552671", "+14155552672"}
    new = deps.settings.replace(field_keys=NEW_KEYS)
    copies = await deps.db.fetch_all("SELECT phone_enc FROM message_recipients", {})
    assert sorted(crypto.decrypt(new, r["phone_enc"], crypto.member_phone(church))
                  for r in copies) == ["+14155552671", "+14155552672"]
