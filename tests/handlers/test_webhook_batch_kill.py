"""Issue 11's zero-loss rule with group commit: a real `ywm web` process SIGKILLed during a
burst of concurrent signed webhooks (texts and delivery receipts) loses nothing it answered
2xx, and the carrier's retries of the unanswered ones are stored exactly once."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import tornado.httpclient
import ujson

from server.carriers.base import InboundText
from server.services import inbound
from tests.carriers.webhook_kit import (HANDSET, OURS, church_with_number, sent_reply,
                                        telnyx_headers, telnyx_inbound, telnyx_status)
from tests.server.ops_support import (answers, free_port, running_webs, start_web, stop_web,
                                      wait_until, web_env)

SENDERS = 16          # webhooks in flight at once
KILL_AFTER = 60       # 2xx answers before the SIGKILL, so batches are mid-stream
HANDSETS = [f"+1415555{n:04d}" for n in range(20)]
REPLIES = 400         # sent replies whose `delivered` receipts join the burst


def webhook(n: int) -> tuple[str, bytes]:
    """(provider message id, body): every third a receipt for reply `pid-<n>`, else a
    fresh inbound text."""
    if n % 3 == 2 and n < REPLIES:
        return f"pid-{n}", telnyx_status(f"pid-{n}", "delivered")
    message_id = str(uuid.uuid4())
    return message_id, telnyx_inbound("Sunday?", handset=HANDSETS[n % 20],
                                      message_id=message_id)


async def send(http: Any, port: int, body: bytes) -> int:
    """The HTTP status, or 0 when no answer came (the process died)."""
    try:
        response = await http.fetch(f"http://127.0.0.1:{port}/webhooks/telnyx", method="POST",
                                    body=body, headers=telnyx_headers(body),
                                    raise_error=False, request_timeout=20)
    except Exception:  # noqa: BLE001 - a killed server resets or refuses: no answer
        return 0
    return response.code


async def stored_counts(deps: Any) -> dict[str, int]:
    """Inbound texts: how many rows carry each provider id; a receipt's reply counts 1
    once it is delivered (0 before)."""
    rows = await deps.db.fetch_all(
        "SELECT provider_message_id AS id, count(*) AS n FROM conversation_messages "
        "WHERE direction = 'inbound' GROUP BY provider_message_id "
        "UNION ALL SELECT provider_message_id, count(*) FILTER (WHERE status = 'delivered') "
        "FROM conversation_messages WHERE direction = 'outbound' "
        "GROUP BY provider_message_id", {})
    return {row["id"]: int(row["n"]) for row in rows if row["n"]}


@pytest.mark.gen_test(timeout=180)
async def test_sigkill_during_a_webhook_burst_loses_nothing_answered(
        deps: Any, settings: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    await inbound.record_inbound(deps.db, deps.redis, deps.settings, InboundText(
        "telnyx", "first", "first", HANDSET, OURS, "hello"))
    for n in range(2, REPLIES, 3):
        await sent_reply(deps, setup, "telnyx", f"pid-{n}", status="sending")
    port = free_port()
    process = start_web(web_env(settings, YWM_CARRIER_BATCH_MS="20"), port)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=SENDERS * 2)
    answered: list[str] = []
    unanswered: dict[str, bytes] = {}
    stop = asyncio.Event()
    counter = iter(range(1_000_000))

    async def sender() -> None:
        while not stop.is_set():
            message_id, body = webhook(next(counter))
            code = await send(http, port, body)
            if code == 200:
                answered.append(message_id)
            else:
                unanswered[message_id] = body

    try:
        assert await asyncio.to_thread(wait_until, lambda: answers(port), 30)
        tasks = [asyncio.ensure_future(sender()) for _ in range(SENDERS)]
        for _ in range(1200):  # at most 60 s
            if len(answered) >= KILL_AFTER:
                break
            await asyncio.sleep(0.05)
        assert len(answered) >= KILL_AFTER, "the web process answered too few webhooks"
        process.kill()  # SIGKILL: no drain, no goodbye, batches cut wherever they are
        await asyncio.to_thread(process.wait, 15)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        if process.poll() is None:
            process.kill()
        stop_web(process)
    # The kill landed mid-burst: webhooks were in flight and got no answer.
    assert unanswered, "no webhook was in flight at the kill"
    stored = await stored_counts(deps)
    assert [m for m in answered if stored.get(m) != 1] == [], "answered 2xx but not stored"
    # The carrier retries what got no answer: each is stored exactly once (some were
    # committed before the kill and come back as duplicates).
    outcomes: dict[str, int] = {}
    with running_webs(settings, 1) as (again,):
        for message_id, body in unanswered.items():
            response = await http.fetch(f"http://127.0.0.1:{again}/webhooks/telnyx",
                                        method="POST", body=body,
                                        headers=telnyx_headers(body), request_timeout=20)
            outcome = ujson.loads(response.body)["data"]["outcome"]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    http.close()
    assert set(outcomes) <= {"stored", "duplicate"}
    stored = await stored_counts(deps)
    sent = set(answered) | set(unanswered)
    assert {m: stored.get(m) for m in sent if stored.get(m) != 1} == {}
    assert set(stored) == sent | {"first"}  # nothing else either
    assert any(m.startswith("pid-") for m in answered)  # receipts were in the burst
