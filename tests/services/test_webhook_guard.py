"""The SSRF guard of customer webhooks: which addresses are refused, and that the check
runs again at every delivery (a host that resolves somewhere private by then reaches
nothing), plus the signature format and the stream-to-webhook type mapping."""
from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from server.events import webhooks as catalogue
from server.platform import webhook_http
from server.services import webhook_delivery, webhooks
from tests.factories import create_church
from tests.webhook_kit import documented_verify, start_receiver, stop_receiver
from tests.workers.test_webhook_delivery import emit

REFUSED = ["127.0.0.1", "127.8.9.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
           "169.254.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250",
           "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
           "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2001:db8::1"]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert webhook_http.address_allowed(address) is False


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert webhook_http.address_allowed(address) is True


@pytest.mark.gen_test(timeout=30)
async def test_url_rules() -> None:
    for url in ("http://localhost:8080/", "http://169.254.169.254/latest/meta-data/",
                "http://[::1]/", "http://2130706433/", "http://0x7f.1/"):
        with pytest.raises(webhook_http.UnsafeUrl):
            await webhook_http.check_url(url, allow_private=False, require_https=False)
    with pytest.raises(webhook_http.UnsafeUrl, match="https"):
        await webhook_http.check_url("http://8.8.8.8/", allow_private=False, require_https=True)
    with pytest.raises(webhook_http.UnsafeUrl, match="resolve"):
        await webhook_http.check_url("https://no-such-host.invalid/", allow_private=True,
                                     require_https=True)
    await webhook_http.check_url("https://8.8.8.8/hook", allow_private=False, require_https=True)
    await webhook_http.check_url("http://localhost:8080/", allow_private=True,
                                 require_https=False)


@pytest.mark.gen_test(timeout=60)
async def test_every_delivery_checks_the_address_again(deps: Any) -> None:
    """An endpoint saved while its host was allowed (here: development's allowance; in
    production, a DNS answer that changed since) is refused at delivery: nothing is sent."""
    church = await create_church(deps)
    church_id = uuid.UUID(str(church["church_id"]))
    receiver = await start_receiver()
    try:
        for host in ("localhost", "127.0.0.1"):  # a name through the resolver, a literal
            url = receiver.url.replace("127.0.0.1", host)
            created = await webhooks.create_endpoint(deps.db, deps.settings, church_id,
                                                     {"url": url, "events": ["member.opted_out"]})
            allowing = deps.settings
            deps.settings = allowing.replace(webhook_allow_private=False)
            try:
                await emit(deps, church_id, 1)
                await webhook_delivery.advance(deps)
                assert await webhook_delivery.deliver_round(deps, church_id, created["id"]) == 1
            finally:
                deps.settings = allowing
            page, _ = await webhooks.list_deliveries(deps.db, church_id, created["id"], 10, None)
            assert page[0]["status"] == "pending" and page[0]["status_code"] is None
            assert "private" in page[0]["error"], page[0]
            await webhooks.delete_endpoint(deps.db, church_id, created["id"])
        assert receiver.received == []
    finally:
        await stop_receiver(receiver)


def test_signature_format_and_the_documented_check() -> None:
    body = b'{"id":"1","type":"member.opted_out"}'
    header = webhook_delivery.sign(["whsec_new", "whsec_old"], body, 1767225600)
    new = hmac.new(b"whsec_new", b"1767225600." + body, hashlib.sha256).hexdigest()
    old = hmac.new(b"whsec_old", b"1767225600." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1767225600,v1={new},v1={old}"
    verify = documented_verify()
    fresh = webhook_delivery.sign(["whsec_new"], body, int(__import__("time").time()))
    assert verify("whsec_new", fresh, body)
    assert not verify("whsec_other", fresh, body)
    assert not verify("whsec_new", fresh, body + b" ")
    assert not verify("whsec_new", header, body)  # 2026-01-01: too old to accept


def test_stream_types_map_to_webhook_types_once() -> None:
    everything = frozenset(catalogue.CATALOGUE)
    progress = {"id": "b1", "status": "sending"}
    assert catalogue.deliveries_for(7, "broadcast.progress", progress, everything) == [
        ("broadcast.progress", "7:broadcast.progress")]
    done = {"id": "b1", "status": "completed"}
    assert catalogue.deliveries_for(8, "broadcast.progress", done, everything) == [
        ("broadcast.progress", "8:broadcast.progress"),
        ("broadcast.completed", "broadcast.completed:b1")]
    assert catalogue.deliveries_for(8, "broadcast.progress", done,
                                    {"broadcast.completed"}) == [
        ("broadcast.completed", "broadcast.completed:b1")]
    assert catalogue.deliveries_for(9, "api_key.created", {}, everything) == []
    assert catalogue.deliveries_for(9, "member.opted_in", {}, {"member.opted_out"}) == []
    assert catalogue.payload_id(8, "broadcast.completed") == "8.completed"


@pytest.mark.gen_test(timeout=60)
async def test_event_pruning_keeps_what_an_endpoint_has_not_read(deps: Any) -> None:
    """A pump that was down for days still finds every event after its cursor."""
    from server.services.events import prune_events
    from tests.services.test_events import _age
    church = await create_church(deps)
    church_id = uuid.UUID(str(church["church_id"]))
    await emit(deps, church_id, 3)
    created = await webhooks.create_endpoint(deps.db, deps.settings, church_id, {
        "url": "http://127.0.0.1:9/hook", "events": ["member.opted_out"]})  # cursor: 3
    await emit(deps, church_id, 9)
    await _age(deps, church_id, 12, days=2)
    assert (await prune_events(deps.db, keep=2)).deleted == 3  # not 10: ids 4-12 unread
    assert await webhook_delivery.advance(deps) == 9
    assert (await prune_events(deps.db, keep=2)).deleted == 7  # read: retention as usual
    await webhooks.update_endpoint(deps.db, deps.settings, church_id, created["id"],
                                   {"disabled": True})
    page, _ = await webhooks.list_deliveries(deps.db, church_id, created["id"], 50, None)
    assert len(page) == 9


@pytest.mark.gen_test(timeout=60)
async def test_key_rotation_reseals_secrets_and_delivery_data(deps: Any) -> None:
    """After `ywm rotate-keys` the old field key can go: endpoints still sign with both
    secrets and pending deliveries still open their members' phones."""
    from server.events.log import record_event
    from server.events.types import conversation_updated
    from tests.services.test_key_rotation import BOTH_KEYS, NEW_KEYS, OLD_KEYS
    old = deps.settings.replace(field_keys=OLD_KEYS)
    both = deps.settings.replace(field_keys=BOTH_KEYS)
    new = deps.settings.replace(field_keys=NEW_KEYS)
    church = await create_church(deps)
    church_id = uuid.UUID(str(church["church_id"]))
    created = await webhooks.create_endpoint(deps.db, old, church_id, {
        "url": "http://127.0.0.1:9/hook", "events": ["conversation.updated"]})
    rotated = await webhooks.rotate_secret(deps.db, old, church_id, created["id"])
    async with deps.db.transaction() as conn:
        await record_event(conn, church_id, conversation_updated(
            {"id": str(uuid.uuid4()), "member": {"phone": "+14155550123"}}), old)
    original, deps.settings = deps.settings, old
    try:
        await webhook_delivery.advance(deps)
    finally:
        deps.settings = original
    assert await webhooks.reseal(deps.db, both, write=False) == 3  # 2 secrets, 1 phone
    assert await webhooks.reseal(deps.db, both) == 3
    assert await webhooks.reseal(deps.db, both, write=False) == 0
    async with deps.db.acquire() as conn:
        endpoint = await conn.fetch_one("SELECT * FROM webhook_endpoints")
        delivery = await conn.fetch_one("SELECT payload FROM webhook_deliveries")
    now = datetime.now(timezone.utc)
    assert webhook_delivery.signing_secrets(new, endpoint, now) == [rotated["secret"],
                                                                    created["secret"]]
    opened = webhook_delivery.unseal(new, delivery["payload"], church_id)
    assert opened["data"]["member"]["phone"] == "+14155550123"


def test_production_refuses_private_webhook_targets() -> None:
    from server.platform.settings import Settings, SettingsError
    with pytest.raises(SettingsError, match="YWM_WEBHOOK_ALLOW_PRIVATE must be off"):
        Settings.from_env({"YWM_ENV": "production", "YWM_WEBHOOK_ALLOW_PRIVATE": "true"})
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"YWM_ENV": "production"})
    assert "YWM_WEBHOOK_ALLOW_PRIVATE" not in str(refused.value)
