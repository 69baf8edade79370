"""Carrier webhook group commit (server/services/webhook_batch.py) against the real app,
PostgreSQL and Redis: concurrent webhooks share one transaction and are all answered,
repeats inside one batch are stored once, and a batch that cannot commit answers 503 and
leaves nothing behind."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
import tornado.httpclient
import ujson

from db.engine import Database
from server.services.webhook_batch import WebhookBatcher
from tests.carriers.webhook_kit import (church_with_number, sent_reply, telnyx_headers,
                                        telnyx_inbound, telnyx_status, twilio_inbound,
                                        twilio_request)
from tests.server.ops_support import TcpProxy

OURS_B = "+18445550002"
UNKNOWN = "+18005550199"
# Long enough for a burst of signed webhooks from this test to land in one batch.
BATCH_MS = 1500.0


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    from server.platform import queue
    queue.configure(settings)


@pytest.fixture
def client(http_server: Any) -> Iterator[tornado.httpclient.AsyncHTTPClient]:
    """Enough connections that a whole burst is in flight at once (to the app's server)."""
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=64)
    yield http
    http.close()


def batched(deps: Any, db: Database | None = None, ms: float = BATCH_MS) -> WebhookBatcher:
    batcher = WebhookBatcher(db or deps.db, deps.redis,
                             deps.settings.replace(carrier_batch_ms=ms, carrier_batch_size=64),
                             deps.metrics)
    deps.webhook_batcher = batcher
    return batcher


async def post(client: Any, base_url: str, deps: Any, carrier: str, payload: Any
               ) -> tuple[int, Any]:
    if carrier == "telnyx":
        body, headers = payload, telnyx_headers(payload)
    else:
        body, headers = twilio_request(deps.settings, payload)
    response = await client.fetch(f"{base_url}/webhooks/{carrier}", method="POST", body=body,
                                  headers=headers, raise_error=False, request_timeout=60)
    raw = response.body or b""
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return response.code, ujson.loads(raw)
    return response.code, raw


def handset(n: int) -> str:
    return f"+1415555{n:04d}"


async def rows(deps: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    return await deps.db.fetch_all(sql, params)


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_texts_and_receipts_commit_together_and_are_answered(
        deps: Any, base_url: str, client: Any) -> None:
    a = await church_with_number(deps, "telnyx", name="Grace")
    b = await church_with_number(deps, "twilio", phone=OURS_B, name="Hope")
    # A member of church A with two sent replies carrying provider ids.
    batched(deps, ms=1.0)
    assert (await post(client, base_url, deps, "telnyx", telnyx_inbound("hi")))[0] == 200
    for pid in ("pid-1", "pid-2"):
        await sent_reply(deps, a, "telnyx", pid, status="sending")
    batched(deps)
    # `sent` then `delivered` for one provider id in one batch apply in arrival order.
    first = asyncio.ensure_future(post(client, base_url, deps, "telnyx", telnyx_status(
        "pid-1", "sent", event_type="message.sent")))
    await asyncio.sleep(0.2)
    burst = [("telnyx", telnyx_inbound(f"text {n}", handset=handset(n))) for n in range(5)]
    burst += [("twilio", twilio_inbound(f"text {n}", handset=handset(n), ours=OURS_B))
              for n in range(3)]
    burst += [("telnyx", telnyx_status("pid-1", "delivered")),
              ("telnyx", telnyx_status("pid-2", "delivered")),
              ("telnyx", telnyx_status("pid-unknown", "delivered")),  # held for later
              ("telnyx", telnyx_inbound("nobody's", ours=UNKNOWN))]
    rest = await asyncio.gather(*[post(client, base_url, deps, carrier, payload)
                                  for carrier, payload in burst])
    answers = [await first, *rest]
    assert deps.metrics.counted("ywm_carrier_webhook_batches_total", result="committed") == 2
    assert [code for code, _ in answers] == [200] * 13
    outcomes = [body["data"]["outcome"] for (code, body), (carrier, _) in
                zip(answers, [("telnyx", None)] + burst) if carrier == "telnyx"]
    assert outcomes == ["stored"] * 8 + ["held", "unknown_number"]
    # One transaction: every dedupe row of the burst carries that transaction's now().
    stamps = await rows(deps, "SELECT DISTINCT received_at FROM inbound_dedupe "
                              "WHERE received_at > (SELECT min(received_at) FROM inbound_dedupe)")
    assert len(stamps) == 1
    inbound = await rows(deps, "SELECT church_id FROM conversation_messages "
                               "WHERE direction = 'inbound'")
    assert sorted(str(r["church_id"]) for r in inbound) == sorted(
        [str(a["church_id"])] * 6 + [str(b["church_id"])] * 3)
    replies = await rows(deps, "SELECT provider_message_id, status FROM conversation_messages "
                               "WHERE direction = 'outbound' ORDER BY provider_message_id")
    assert [(r["provider_message_id"], r["status"]) for r in replies] == [
        ("pid-1", "delivered"), ("pid-2", "delivered")]
    held = await rows(deps, "SELECT provider_message_id FROM early_receipts")
    assert [r["provider_message_id"] for r in held] == ["pid-unknown"]
    # Each church's events: ids 1..n with no gap, `sent` before `delivered` for pid-1.
    events = await rows(deps, "SELECT id, type, data FROM events WHERE church_id = %(c)s "
                              "ORDER BY id", c=a["church_id"])
    assert [int(e["id"]) for e in events] == list(range(1, 10))
    assert sorted(e["data"]["status"] for e in events if e["type"] == "message.status") == [
        "delivered", "delivered", "sent"]
    statuses = [e["data"] for e in events if e["type"] == "message.status"]
    pid1 = [s["status"] for s in statuses if s["message_id"] == statuses[0]["message_id"]]
    assert pid1 == ["sent", "delivered"]
    events_b = await rows(deps, "SELECT id FROM events WHERE church_id = %(c)s ORDER BY id",
                          c=b["church_id"])
    assert [int(e["id"]) for e in events_b] == [1, 2, 3]


@pytest.mark.gen_test(timeout=60)
async def test_repeats_of_one_event_in_one_batch_are_stored_once(
        deps: Any, base_url: str, client: Any) -> None:
    await church_with_number(deps, "telnyx")
    batched(deps)
    body = telnyx_inbound("once", event_id=str(uuid.uuid4()))
    answers = await asyncio.gather(*[post(client, base_url, deps, "telnyx", body)
                                     for _ in range(3)])
    assert sorted(body["data"]["outcome"] for _, body in answers) == [
        "duplicate", "duplicate", "stored"]
    assert len(await rows(deps, "SELECT id FROM conversation_messages")) == 1
    assert len(await rows(deps, "SELECT 1 FROM inbound_dedupe")) == 1
    assert len(await rows(deps, "SELECT id FROM events")) == 1


@pytest.mark.gen_test(timeout=60)
async def test_one_webhook_that_cannot_be_stored_does_not_fail_its_batch(
        deps: Any, base_url: str, client: Any) -> None:
    """A text the database refuses (here a CHECK constraint the test adds) fails its
    batch's transaction, the batch is applied again one event at a time, and only the
    poisoned webhook is answered 503."""
    await church_with_number(deps, "telnyx")
    await deps.db.execute("ALTER TABLE conversation_messages ADD CONSTRAINT test_poison "
                          "CHECK (body <> 'poison')", {})
    batched(deps)
    good, bad = telnyx_inbound("fine"), telnyx_inbound("poison")
    answers = await asyncio.gather(*[post(client, base_url, deps, "telnyx", body)
                                     for body in (good, bad)])
    assert answers[0] == (200, {"data": {"outcome": "stored"}, "meta": {}})
    assert answers[1][0] == 503 and answers[1][1]["error"]["code"] == "unavailable"
    assert [deps.metrics.counted("ywm_carrier_webhook_batches_total", result=result)
            for result in ("split", "failed", "committed")] == [1, 1, 1]
    stored = await rows(deps, "SELECT body FROM conversation_messages")
    assert [r["body"] for r in stored] == ["fine"]
    assert len(await rows(deps, "SELECT 1 FROM inbound_dedupe")) == 1


@pytest.mark.gen_test(timeout=60)
async def test_a_text_carrying_nul_is_stored_without_it(
        deps: Any, base_url: str, client: Any) -> None:
    """PostgreSQL text cannot hold U+0000; a text carrying one (JSON "\\u0000") is stored
    with it removed rather than refused for ever."""
    await church_with_number(deps, "telnyx")
    batched(deps, ms=1.0)
    status, body = await post(client, base_url, deps, "telnyx",
                              telnyx_inbound("nul \u0000 inside"))
    assert (status, body["data"]["outcome"]) == (200, "stored")
    stored = await rows(deps, "SELECT body FROM conversation_messages")
    assert [r["body"] for r in stored] == ["nul  inside"]


async def _wait_for_lock_wait(deps: Any, timeout: float = 20.0) -> None:
    """Until some backend waits on a row lock (the batch's receipt UPDATE)."""
    for _ in range(int(timeout / 0.05)):
        waiting = await deps.db.fetch_all(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()", {})
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the batch never waited on the locked row")


@pytest.mark.gen_test(timeout=90)
async def test_a_batch_that_cannot_commit_answers_every_request_503_and_writes_nothing(
        deps: Any, base_url: str, client: Any, settings: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    batched(deps, ms=1.0)
    assert (await post(client, base_url, deps, "telnyx", telnyx_inbound("hi")))[0] == 200
    await sent_reply(deps, setup, "telnyx", "pid-locked")
    # The batch's own pool reaches PostgreSQL through a proxy the test can cut.
    url = urlsplit(settings.database_url)
    proxy = TcpProxy(url.port or 5432)
    await proxy.start()
    via_proxy = urlunsplit(url._replace(netloc=url.netloc.replace(
        f":{url.port}", f":{proxy.port}")))
    db = await Database.connect(via_proxy, maxsize=4)
    locker = psycopg2.connect(settings.database_url)
    try:
        batched(deps, db=db, ms=300.0)
        with locker.cursor() as cur:  # hold the reply's row: the batch stops mid-way
            cur.execute("SELECT id FROM conversation_messages WHERE provider_message_id = "
                        "'pid-locked' FOR UPDATE")
        bodies = [telnyx_inbound("lost?", handset=handset(7)),
                  telnyx_status("pid-locked", "delivered")]
        answers = asyncio.ensure_future(asyncio.gather(
            *[post(client, base_url, deps, "telnyx", body) for body in bodies]))
        await _wait_for_lock_wait(deps)  # routed and deduped, now waiting on the lock
        await proxy.stop()  # the batch's connection dies inside its transaction
        results = await asyncio.wait_for(answers, 30)
    finally:
        locker.rollback()
        locker.close()
        await proxy.stop()
        await db.close()
    for code, body in results:
        assert code == 503 and body["error"]["code"] == "unavailable"
    # Nothing of the batch: no dedupe rows beyond the first text's, no text, no status move.
    assert len(await rows(deps, "SELECT 1 FROM inbound_dedupe")) == 1
    messages = await rows(deps, "SELECT body, status FROM conversation_messages "
                                "ORDER BY created_at")
    assert [(m["body"], m["status"]) for m in messages] == [("hi", "received"),
                                                           ("Reply", "sent")]
    # The carrier's retries then go through (a healthy pool again) and are stored once.
    batched(deps, ms=1.0)
    for body in bodies:
        code, answer = await post(client, base_url, deps, "telnyx", body)
        assert (code, answer["data"]["outcome"]) == (200, "stored")
    assert len(await rows(deps, "SELECT 1 FROM inbound_dedupe")) == 3


@pytest.mark.gen_test(timeout=90)
async def test_a_batch_that_deadlocks_is_retried_and_answered(
        deps: Any, base_url: str, client: Any, settings: Any) -> None:
    """A real deadlock: the batch waits on a reply row another transaction holds, which then
    waits on the batch's own dedupe row. PostgreSQL aborts the batch (it waited first; the
    other side's deadlock_timeout is longer), the batcher runs it again once the other
    transaction is gone, and both webhooks are answered `stored`, stored once."""
    setup = await church_with_number(deps, "telnyx")
    batched(deps, ms=1.0)
    assert (await post(client, base_url, deps, "telnyx", telnyx_inbound("hi")))[0] == 200
    await sent_reply(deps, setup, "telnyx", "pid-held")
    batched(deps, ms=300.0)
    event_id = str(uuid.uuid4())
    bodies = [telnyx_inbound("deadlocked?", handset=handset(8), event_id=event_id),
              telnyx_status("pid-held", "delivered")]
    other = psycopg2.connect(settings.database_url)
    try:
        with other.cursor() as cur:
            cur.execute("SET deadlock_timeout = '20s'")  # the batch's check fires first
            cur.execute("SELECT id FROM conversation_messages WHERE provider_message_id = "
                        "'pid-held' FOR UPDATE")
        answers = asyncio.ensure_future(asyncio.gather(
            *[post(client, base_url, deps, "telnyx", body) for body in bodies]))
        await _wait_for_lock_wait(deps)  # the batch routed, deduped, and waits on the row

        def close_the_cycle() -> None:
            with other.cursor() as cur:  # waits on the batch's dedupe row: a cycle
                cur.execute("INSERT INTO inbound_dedupe (provider, provider_event_id, "
                            "church_id) VALUES ('telnyx', %s, %s) ON CONFLICT DO NOTHING",
                            (event_id, setup["church_id"]))
            other.rollback()  # the batch's retry may go on

        await asyncio.wait_for(asyncio.to_thread(close_the_cycle), 30)
        results = await asyncio.wait_for(answers, 30)
    finally:
        other.close()
    assert [(code, body["data"]["outcome"]) for code, body in results] == [
        (200, "stored"), (200, "stored")]
    assert deps.metrics.counted("ywm_carrier_webhook_batches_total", result="retried") == 1
    assert deps.metrics.counted("ywm_carrier_webhook_batches_total", result="split") == 0
    messages = await rows(deps, "SELECT body, status FROM conversation_messages "
                                "ORDER BY created_at")
    assert [(m["body"], m["status"]) for m in messages] == [
        ("hi", "received"), ("Reply", "delivered"), ("deadlocked?", "received")]
