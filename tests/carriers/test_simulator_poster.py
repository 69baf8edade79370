"""The simulator's webhook poster (server/carriers/simulator/poster.py): many receipts in
flight at once all reach our real server with valid signatures; and, against a peer that
misbehaves on purpose, the simulator retries a 5xx as a carrier does (re-signed, next
`meta.attempt`), survives a keep-alive connection the server dropped, reads chunked
answers, and gives up with 599 when nothing answers in time."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator
from uuid import UUID

import pytest
import ujson

from db.queries import conversations as conv_q
from server.carriers import client_for, telnyx
from server.carriers.simulator import Simulator, start_simulator
from server.carriers.simulator.poster import Poster
from server.carriers.simulator.webhooks import WEBHOOK_CONNECTIONS
from server.platform.settings import DEV_TELNYX_PRIVATE_KEY, DEV_TELNYX_PUBLIC_KEY, Settings
from server.services import inbound
from tests.carriers.webhook_kit import OURS, church_with_number, snapshot

MESSAGES = 3 * WEBHOOK_CONNECTIONS  # more receipts than connections: they queue, none lost
IN_FLIGHT = 16


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    from server.platform import queue
    queue.configure(settings)


@pytest.fixture
def sim(io_loop: Any, deps: Any, http_server: Any, base_url: str) -> Iterator[Simulator]:
    value = io_loop.run_sync(lambda: start_simulator(
        deps.settings, callback_base=base_url, public_base=deps.settings.public_url,
        status_delay_ms=300, webhook_retry_delay_ms=10, seed=11))
    yield value
    io_loop.run_sync(value.stop)


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_receipts_all_reach_the_rows(sim: Simulator, deps: Any,
                                                      base_url: str) -> None:
    setup = await church_with_number(deps, "telnyx")
    sim.config.update({"webhook_concurrency": IN_FLIGHT})
    async with deps.db.acquire() as conn:
        member = await conn.fetch_one(
            "INSERT INTO members (church_id, first_name, phone_enc, phone_hash) "
            "VALUES (%(c)s, 'Ann', '\\x00', '\\x01') RETURNING id", {"c": setup["church_id"]})
        conversation = await conv_q.upsert_inbound_conversation(
            conn, setup["church_id"], member["id"], setup["number_id"], "hi")
    client = client_for("telnyx", sim.settings_for_clients(
        deps.settings.replace(public_url=base_url)))
    results = await asyncio.gather(*(
        client.send(from_number=OURS, to=f"+1415555{i:04d}", body=f"Welcome {i}")
        for i in range(MESSAGES)))
    assert {r.outcome for r in results} == {"sent"}
    async with deps.db.transaction() as conn:  # the send worker's commit of the ids
        for result in results:
            await conv_q.insert_conversation_message(conn, {
                "church_id": setup["church_id"], "conversation_id": conversation["id"],
                "direction": "outbound", "body": "Welcome", "media_urls": [],
                "status": "sending", "number_id": setup["number_id"], "provider": "telnyx",
                "provider_message_id": result.provider_message_id, "segments": 1,
                "next_attempt_at": None})
    await sim.drain(timeout=45)
    # A receipt that beat the commit above is held; the reconciler's pass applies it.
    await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings)
    rows = await snapshot(deps, UUID(str(setup["church_id"])))
    statuses = [m["status"] for m in rows["messages"] if m["direction"] == "outbound"]
    assert statuses == ["delivered"] * MESSAGES
    posted = [d for d in sim.state.deliveries if d["kind"].startswith("message.")]
    # Our server verifies every signature (a bad one is a 401): all answered 200 at once.
    assert len(posted) == 2 * MESSAGES
    assert {(d["status"], d["attempt"]) for d in posted} == {(200, 1)}
    assert sim.state.counters["webhook_failures"] == 0
    # Kept alive and bounded: no more connections than posts allowed in flight.
    assert sim.webhooks._poster is not None
    assert sim.webhooks._poster.connections_opened <= IN_FLIGHT


class Peer:
    """A raw HTTP/1.1 server standing in for our web process, misbehaving on request."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen: list[dict[str, Any]] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers["content-length"]))
                if self.mode == "drop_reused" and served == 1:
                    writer.close()  # as a server closing an idle keep-alive connection
                    return
                if self.mode == "silent":
                    await asyncio.sleep(5)
                    return
                served += 1
                envelope = ujson.loads(body)
                valid = telnyx.verify_signature(
                    DEV_TELNYX_PUBLIC_KEY, headers.get(telnyx.SIGNATURE_HEADER.lower()),
                    headers.get(telnyx.TIMESTAMP_HEADER.lower()), body)
                attempt = envelope["meta"]["attempt"]
                self.seen.append({"id": envelope["data"]["id"], "attempt": attempt,
                                  "valid": valid, "path": lines[0].split(" ")[1]})
                status = 503 if self.mode == "fail_first" and attempt == 1 else 200
                if self.mode == "chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                else:
                    text = b"retry later" if status == 503 else b""
                    writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                                 % (status, len(text), text))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def _sim_against(peer: Peer, **config: Any) -> Simulator:
    url = await peer.start()
    settings = Settings.from_env({"YWM_ENV": "test"})
    return await start_simulator(settings, callback_base=url, webhook_retry_delay_ms=5,
                                 **config)


async def _deliver(sim: Simulator, count: int) -> list[dict[str, Any]]:
    url = sim.webhooks.telnyx_url() + "?recipient=abc"
    return list(await asyncio.gather(*(
        sim.webhooks.deliver_telnyx("message.sent", {"id": f"m{i}", "to": [{}]}, url)
        for i in range(count))))


@pytest.mark.gen_test(timeout=30)
async def test_a_receipt_answered_5xx_is_retried_re_signed() -> None:
    peer = Peer("fail_first")
    sim = await _sim_against(peer)
    try:
        results = await _deliver(sim, 20)
    finally:
        await sim.stop()
        await peer.stop()
    assert {(r["delivered"], r["attempts"], r["status"]) for r in results} == {(True, 2, 200)}
    by_event: dict[str, list[int]] = {}
    for seen in peer.seen:
        by_event.setdefault(seen["id"], []).append(seen["attempt"])
    assert sorted(by_event.values()) == [[1, 2]] * 20  # same event id, next attempt
    assert all(s["valid"] for s in peer.seen)
    assert {s["path"] for s in peer.seen} == {"/webhooks/telnyx?recipient=abc"}
    assert sim.state.counters["webhook_failures"] == 20


@pytest.mark.gen_test(timeout=30)
async def test_a_dropped_keep_alive_connection_is_replaced_not_failed() -> None:
    peer = Peer("drop_reused")
    sim = await _sim_against(peer)
    try:
        first = await _deliver(sim, 1)
        later = [(await _deliver(sim, 1))[0] for _ in range(5)]
    finally:
        await sim.stop()
        await peer.stop()
    assert [(r["status"], r["attempts"]) for r in first + later] == [(200, 1)] * 6
    assert sim.state.counters["webhook_failures"] == 0
    assert len(peer.seen) == 6 and peer.connections >= 6


@pytest.mark.gen_test(timeout=30)
async def test_chunked_answers_are_read_and_the_connection_reused() -> None:
    peer = Peer("chunked")
    sim = await _sim_against(peer)
    try:
        results = [(await _deliver(sim, 1))[0] for _ in range(5)]
    finally:
        await sim.stop()
        await peer.stop()
    assert [(r["status"], r["response"]) for r in results] == [(200, "abcde")] * 5
    assert peer.connections == 1


@pytest.mark.gen_test(timeout=30)
async def test_no_answer_in_time_is_599_after_every_attempt() -> None:
    peer = Peer("silent")
    sim = await _sim_against(peer, webhook_timeout=0.2, webhook_attempts=2)
    try:
        results = await _deliver(sim, 1)
    finally:
        await sim.stop()
        await peer.stop()
    assert (results[0]["delivered"], results[0]["attempts"], results[0]["status"]) == \
        (False, 2, 599)


@pytest.mark.gen_test(timeout=10)
async def test_poster_bounds_posts_in_flight() -> None:
    peer = Peer("ok")
    url = await peer.start()
    poster = Poster(4)
    try:
        body = ujson.dumps({"data": {"id": "e"}, "meta": {"attempt": 1}}).encode()
        headers = telnyx.signed_headers(DEV_TELNYX_PRIVATE_KEY, body)
        answers = await asyncio.gather(*(poster.post(url + "/webhooks/telnyx", body, headers,
                                                     2.0) for _ in range(40)))
    finally:
        poster.close()
        await peer.stop()
    assert [status for status, _ in answers] == [200] * 40
    assert poster.connections_opened <= 4
