"""Issue 11's zero-loss rule with group commit: a real `ywm web` process SIGKILLed during a
burst of concurrent signed webhooks loses nothing it answered 2xx, and the carrier's
retries of the unanswered ones are stored exactly once."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import tornado.httpclient
import ujson

from tests.carriers.webhook_kit import church_with_number, telnyx_headers, telnyx_inbound
from tests.server.ops_support import (answers, free_port, running_webs, start_web, stop_web,
                                      wait_until, web_env)

SENDERS = 16          # webhooks in flight at once
KILL_AFTER = 60       # 2xx answers before the SIGKILL, so batches are mid-stream
HANDSETS = [f"+1415555{n:04d}" for n in range(20)]


def webhook() -> tuple[str, bytes]:
    """(provider message id, body) of a fresh inbound text."""
    message_id = str(uuid.uuid4())
    return message_id, telnyx_inbound("Sunday?", handset=HANDSETS[hash(message_id) % 20],
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
    rows = await deps.db.fetch_all(
        "SELECT provider_message_id AS id, count(*) AS n FROM conversation_messages "
        "WHERE direction = 'inbound' GROUP BY provider_message_id", {})
    return {row["id"]: int(row["n"]) for row in rows}


@pytest.mark.gen_test(timeout=180)
async def test_sigkill_during_a_webhook_burst_loses_nothing_answered(
        deps: Any, settings: Any) -> None:
    await church_with_number(deps, "telnyx")
    port = free_port()
    process = start_web(web_env(settings, YWM_CARRIER_BATCH_MS="20"), port)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=SENDERS * 2)
    answered: list[str] = []
    unanswered: dict[str, bytes] = {}
    stop = asyncio.Event()

    async def sender() -> None:
        while not stop.is_set():
            message_id, body = webhook()
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
    assert set(stored) == sent  # nothing else either
