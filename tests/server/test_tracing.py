"""One trace from a carrier webhook (or an API send) through the Huey task to the carrier
call, and a link back from the delivery receipt (server/platform/tracing.py).

Real pieces on loopback: the Tornado app, a Huey consumer's worker threads in this
process, PostgreSQL, Redis and the carrier simulator; spans land in OpenTelemetry's
in-memory exporter, and the tests assert the span tree.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterator

import pytest
import tornado.httpclient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from server.carriers import http as carrier_http
from server.carriers.simulator import start_simulator
from server.platform import queue, tracing
from server.services import consent
from tests.carriers.webhook_kit import telnyx_headers, telnyx_inbound
from tests.workers.bulk import seed_church, sql, token_for

WAIT_SECONDS = 60  # a webhook, a task, a send and two receipts take well under this


@pytest.fixture
def spans(settings: Any) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(settings, "test", exporter=exporter, batch=False)
    yield exporter
    tracing.shutdown()


@pytest.fixture
def sim(io_loop: Any, deps: Any, http_server: Any, base_url: str) -> Iterator[Any]:
    value = io_loop.run_sync(lambda: start_simulator(
        deps.settings, callback_base=base_url, public_base=deps.settings.public_url,
        status_delay_ms=100, seed=3))
    yield value
    io_loop.run_sync(value.stop)


@pytest.fixture
def consumer(settings: Any, sim: Any, spans: Any, base_url: str) -> Iterator[Any]:
    """Two Huey worker threads and the scheduler, in this process (no signal handlers),
    sending to the simulator."""
    from huey.consumer import Consumer

    import workers  # noqa: F401 - registers every task
    # Status callbacks name our public URL: here, the test server.
    _reconfigure(sim.settings_for_clients(settings.replace(public_url=base_url)))
    made = Consumer(queue.huey, workers=2, periodic=False, check_worker_health=False,
                    shutdown_timeout=20)
    made.scheduler.start()
    for _, thread in made.worker_threads:
        thread.start()
    yield made
    made.stop_flag.set()
    assert made._join_workers(), "the consumer's threads did not stop"
    queue.huey.flush()
    _reconfigure(settings)


def _reconfigure(settings: Any) -> None:
    """Point the queue at `settings`, closing the old connection pool's sockets (the
    storage's close() leaves a pool it was handed open)."""
    pool = queue.huey.storage.conn.connection_pool
    queue.configure(settings)
    pool.disconnect()


def _wait(condition: Callable[[], Any], what: str) -> Any:
    async def waiting() -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = condition()
            if found:
                return found
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)
    return waiting()


def _one(found: list[ReadableSpan], what: str) -> ReadableSpan:
    assert len(found) == 1, (what, [(s.name, s.kind) for s in found])
    return found[0]


def _children(all_spans: list[ReadableSpan], parent: ReadableSpan, kind: SpanKind
              ) -> list[ReadableSpan]:
    return [s for s in all_spans if s.kind == kind and s.parent is not None
            and s.parent.span_id == parent.context.span_id]


def _send_chain(all_spans: list[ReadableSpan], root: ReadableSpan, task: str
                ) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """root → `<task> publish` (PRODUCER) → `<task>` (CONSUMER) → carrier POST (CLIENT):
    one trace, each span the parent of the next; returns the task span and its calls."""
    trace_id = root.context.trace_id
    producer = _one([s for s in _children(all_spans, root, SpanKind.PRODUCER)
                     if s.name == f"{task} publish"], "enqueue span")
    consumer = _one([s for s in _children(all_spans, producer, SpanKind.CONSUMER)
                     if s.name == task], "task span")
    assert producer.context.trace_id == consumer.context.trace_id == trace_id
    assert consumer.attributes["messaging.system"] == "huey"
    calls = _children(all_spans, consumer, SpanKind.CLIENT)
    assert calls, "the task made no traced carrier call"
    for call in calls:
        assert call.context.trace_id == trace_id
        assert call.name == "POST"
        assert "/telnyx/v2/messages" in str(call.attributes.get("url.full")
                                            or call.attributes.get("http.url"))
    return consumer, calls


def _carrier_calls(finished: list[ReadableSpan]) -> list[ReadableSpan]:
    """CLIENT spans of sends to the carrier (not the test's own requests)."""
    return [s for s in finished if s.kind == SpanKind.CLIENT and "/telnyx/v2/messages"
            in str(s.attributes.get("url.full") or s.attributes.get("http.url"))]


def _lane_runs_done(finished: list[ReadableSpan], calls: int) -> bool:
    """`calls` carrier spans are finished, and so is each task span they belong to."""
    ended = {s.context.span_id for s in finished if s.kind == SpanKind.CONSUMER}
    made = _carrier_calls(finished)
    return len(made) >= calls and all(
        s.parent is not None and s.parent.span_id in ended for s in made)


def _server_spans(all_spans: list[ReadableSpan], route: str) -> list[ReadableSpan]:
    return [s for s in all_spans if s.kind == SpanKind.SERVER and s.name == f"POST {route}"]


@pytest.mark.gen_test(timeout=120)
async def test_webhook_to_task_to_carrier_and_back_by_receipt(
        deps: Any, base_url: str, spans: InMemorySpanExporter, consumer: Any,
        sim: Any) -> None:
    church = seed_church(deps.settings, members=1)
    body = telnyx_inbound("STOP", handset=church.phones[0], ours=church.number_phone)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        response = await http.fetch(base_url + "/webhooks/telnyx", method="POST",
                                    body=body, headers=telnyx_headers(body))
    finally:
        http.close()
    assert response.code == 200
    confirmation = consent.STOP_CONFIRMATION.format(church="Church 0")
    await _wait(lambda: sql(deps.settings, "SELECT 1 FROM conversation_messages WHERE "
                                           "church_id = %s AND body = %s AND status = "
                                           "'delivered'", (church.id, confirmation)),
                "the confirmation's delivered receipt")
    webhooks = sorted(_server_spans(spans.get_finished_spans(), "/webhooks/telnyx"),
                      key=lambda s: s.start_time or 0)
    inbound = webhooks[0]  # the STOP: the first webhook
    task, calls = _send_chain(list(spans.get_finished_spans()), inbound, "sends.send_reply")
    assert len(calls) == 1
    # The carrier got our trace context: its own (simulated) server span is the call's child.
    assert _children(list(spans.get_finished_spans()), calls[0], SpanKind.SERVER)
    # Each receipt is a new trace (carriers send no context of ours) linked to the send's.
    # Two receipts: message.sent, then message.finalized (delivered).
    receipts = await _wait(lambda: [s for s in _server_spans(
        spans.get_finished_spans(), "/webhooks/telnyx") if s.links][1:] and [
        s for s in _server_spans(spans.get_finished_spans(), "/webhooks/telnyx")
        if s.links], "two linked receipts")
    assert len(receipts) == 2
    assert {link.context.trace_id for r in receipts for link in r.links} == {
        inbound.context.trace_id}
    assert all(r.context.trace_id != inbound.context.trace_id for r in receipts)
    assert all(link.context.span_id == task.context.span_id
               for r in receipts for link in r.links)


@pytest.mark.gen_test(timeout=120)
async def test_api_broadcast_to_lanes_to_carrier(
        deps: Any, base_url: str, spans: InMemorySpanExporter, consumer: Any,
        sim: Any) -> None:
    church = seed_church(deps.settings, members=3, mps=100)
    token = await token_for(deps, church)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        response = await http.fetch(
            base_url + "/api/v1/messages", method="POST", raise_error=False,
            body='{"body": "Choir at 6", "group_ids": ["%s"]}' % church.group_id,
            headers={"Authorization": f"Bearer {token}",
                     "Content-Type": "application/json"})
    finally:
        http.close()
    assert response.code == 202, response.body
    await _wait(lambda: len(sim.state.messages) == 3, "three sends at the carrier")
    await _wait(lambda: _lane_runs_done(list(spans.get_finished_spans()), 3),
                "three carrier spans, and the lane runs that made them")
    finished = list(spans.get_finished_spans())
    api = _one(_server_spans(finished, "/api/v1/messages"), "the API request's span")
    lanes = [s for s in _children(finished, api, SpanKind.PRODUCER)
             if s.name == "sends.dispatch_lane publish"]
    assert len(lanes) == deps.settings.send_lanes  # one enqueue per lane
    # Every carrier call of this broadcast belongs to the request's trace.
    calls = _carrier_calls(finished)
    assert len(calls) == 3
    assert {c.context.trace_id for c in calls} == {api.context.trace_id}
    senders = {c.parent.span_id for c in calls if c.parent is not None}
    lane_runs = {s.context.span_id: s for s in finished
                 if s.kind == SpanKind.CONSUMER and s.name == "sends.dispatch_lane"}
    assert senders <= set(lane_runs)
    for span_id in senders:  # each sending lane run descends from the API request
        parent = lane_runs[span_id].parent
        producer = next(s for s in finished if parent and s.context.span_id == parent.span_id)
        assert producer.kind == SpanKind.PRODUCER


def test_off_by_default_costs_nothing_and_stamps_no_context(settings: Any) -> None:
    assert settings.otel_endpoint == ""
    assert tracing.configure(settings, "web") is False
    assert not tracing.enabled()
    assert tracing.aiohttp_trace_configs() == []
    assert tracing.inject() is None
    with tracing.consuming("sends.send_reply", "t1", {"traceparent": "00-" + "1" * 32
                                                      + "-" + "2" * 16 + "-01"}):
        assert tracing.traceparent() is None
    queue.configure(settings)
    from workers import ops
    raw = queue.huey.serialize_task(ops.ping.s("x"))
    task = queue.huey.deserialize_task(raw)
    assert task.trace is None and task.enqueued_at is not None


def test_a_queued_task_carries_the_enqueuing_span(settings: Any,
                                                  spans: InMemorySpanExporter) -> None:
    queue.configure(settings)
    from workers import ops
    tracer = tracing._tracer
    assert tracer is not None
    with tracer.start_as_current_span("caller") as caller:
        raw = queue.huey.serialize_task(ops.ping.s("x"))
    task = queue.huey.deserialize_task(raw)
    assert task.trace["traceparent"].split("-")[1] == format(caller.get_span_context()
                                                             .trace_id, "032x")
    # Put back by the scheduler (no span around it), it keeps the context it carried.
    again = queue.huey.deserialize_task(queue.huey.serialize_task(task))
    assert again.trace == task.trace
    # An older message without our stamp still runs: no context, no enqueue time.
    old = raw.replace(b',"ywm":', b',"x-old":')
    plain = queue.huey.deserialize_task(old)
    assert plain.trace is None and plain.enqueued_at is None and plain.args == ("x",)


def test_carrier_sessions_are_traced_only_while_tracing_is_on(
        settings: Any, io_loop: Any) -> None:
    async def hooks() -> tuple[int, int]:
        traced = carrier_http.new_session()
        untraced = carrier_http.new_session(traced=False)
        try:
            return len(traced.trace_configs), len(untraced.trace_configs)
        finally:
            await traced.close()
            await untraced.close()
    assert io_loop.run_sync(hooks) == (0, 0)
    exporter = InMemorySpanExporter()
    tracing.configure(settings, "test", exporter=exporter, batch=False)
    try:
        assert io_loop.run_sync(hooks) == (1, 0)
    finally:
        tracing.shutdown()


def test_spans_go_over_otlp_http_to_the_configured_endpoint(settings: Any) -> None:
    """YWM_OTEL_ENDPOINT as production uses it: the real OTLP/HTTP exporter posts
    protobuf to <endpoint>/v1/traces, flushed when tracing shuts down."""
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest)
    received: list[tuple[str, Any]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, ExportTraceServiceRequest.FromString(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
        assert tracing.configure(settings.replace(otel_endpoint=endpoint), "worker")
        with tracing.consuming("ops.ping", "t1", None):
            pass
        tracing.shutdown()  # flushes the batch
    finally:
        tracing.shutdown()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert [path for path, _ in received] == ["/v1/traces"]
    resource = received[0][1].resource_spans[0]
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "ywm-worker"
    assert [s.name for s in resource.scope_spans[0].spans] == ["ops.ping"]
