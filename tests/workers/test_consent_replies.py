"""The STOP confirmation reaches the opted-out member (CARRIERS.md §4.4: exactly one), and
nothing else does: a staff reply queued before the STOP, or written after it, is not sent.

The confirmation is the reply written in the opt-out's own transaction
(db/queries/replies.py explains the rule)."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import tornado.httpclient

from server.services import consent, dispatch, inbound
from server.services.followups import SendReply
from tests.carriers.webhook_kit import telnyx_headers, telnyx_inbound
from tests.workers.bulk import seed_church, sql, token_for
from tests.workers.test_dispatch import queued_reply, sim_deps  # noqa: F401
from tests.workers.test_sends_e2e import stack  # noqa: F401


def outbound(settings: Any, church: Any) -> list[tuple[Any, ...]]:
    return sql(settings, "SELECT body, status, error FROM conversation_messages WHERE "
                         "church_id = %s AND direction = 'outbound' ORDER BY created_at",
               (church.id,))


@pytest.mark.gen_test(timeout=60)
async def test_confirmation_is_sent_but_earlier_staff_reply_is_not(
        sim_deps: Any) -> None:  # noqa: F811 - the fixture imported above
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=1)
    queued_reply(deps.settings, church, 0, "Staff: see you Sunday")  # before the STOP
    result = await inbound.record_inbound(deps.db, deps.redis, deps.settings,
                                          inbound.InboundText(
                                              "telnyx", str(uuid.uuid4()), "in-1",
                                              church.phones[0], church.number_phone, "STOP"))
    assert [type(f) for f in result.followups] == [SendReply]
    assert await dispatch.send_replies(deps, church.id) == 2
    confirmation = consent.STOP_CONFIRMATION.format(church="Church 0")
    assert outbound(deps.settings, church) == [
        ("Staff: see you Sunday", "failed", "The member has opted out."),
        (confirmation, "sent", None)]
    assert [(m["to"], m["text"]) for m in sim.state.messages] == [
        (church.phones[0], confirmation)]


@pytest.mark.gen_test(timeout=120)
async def test_stop_webhook_to_delivered_confirmation_then_staff_reply_409(
        deps: Any, stack: Any) -> None:  # noqa: F811 - the fixture imported above
    church = seed_church(deps.settings, members=1)
    system = stack()
    await system.start(workers=1, threads=2)
    # A number whose carrier does not answer keywords itself (no autoresponse_type), so
    # the confirmation is ours to send.
    body = telnyx_inbound("STOP", handset=church.phones[0], ours=church.number_phone)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        response = await http.fetch(system.web_url + "/webhooks/telnyx", method="POST",
                                    body=body, headers=telnyx_headers(body))
    finally:
        http.close()
    assert response.code == 200
    confirmation = consent.STOP_CONFIRMATION.format(church="Church 0")
    deadline = time.monotonic() + 60
    while outbound(deps.settings, church) != [(confirmation, "delivered", None)]:
        assert time.monotonic() < deadline, outbound(deps.settings, church)
        await asyncio.sleep(0.3)
    assert [(m["to"], m["text"]) for m in system.sim.state.messages] == [
        (church.phones[0], confirmation)]
    token = await token_for(deps, church)
    code, listing = await system.call("GET", "/conversations", token)
    assert code == 200 and len(listing["data"]) == 1
    code, answer = await system.call(
        "POST", f"/conversations/{listing['data'][0]['id']}/messages", token,
        {"body": "Sorry to see you go"})
    assert code == 409 and answer["error"]["code"] == "recipient_opted_out"
    assert len(outbound(deps.settings, church)) == 1
    assert len(system.sim.state.messages) == 1
