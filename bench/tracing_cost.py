"""Tracing's CPU cost per unit of work, off and on (server/platform/tracing.py).

`python -m bench.tracing_cost [--requests 3000] [--tasks 20000] [--sample 1.0]`

Measured as CPU time of this one process (every thread: the span batcher's too), which a
busy machine disturbs much less than the wall-clock rates of the end-to-end benchmarks.
Three pieces, each off and on ("on" = a tracer provider exporting through the batch
processor to an exporter that encodes every span to OTLP protobuf, as the OTLP/HTTP
exporter does, then drops the bytes instead of posting them):

- an HTTP request through Tornado, on loopback, from a minimal keep-alive client (on:
  Tornado's instrumentation makes a SERVER span with its attributes);
- one enqueue as the queue does it (`TracedHuey.serialize_task` under a PRODUCER span,
  the W3C context written into the message);
- one task run's wrapper (`tracing.consuming`, the CONSUMER span parented on that
  context).
The difference between the two columns is what tracing costs per unit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import socket
import sys
import time
from typing import Any, Callable, Sequence

import tornado.httpserver
import tornado.web
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from server.platform import queue, tracing
from server.platform.settings import Settings

OUT = pathlib.Path(__file__).resolve().parent.parent / "var" / "bench"


class EncodeAndDrop(SpanExporter):
    """Does the OTLP exporter's CPU work (protobuf encoding) without a network."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class Hello(tornado.web.RequestHandler):
    def post(self) -> None:
        self.write("ok")


async def _requests(count: int) -> float:
    """CPU µs per request: `count` keep-alive POSTs to a local Tornado app."""
    app = tornado.web.Application([(r"/webhooks/telnyx", Hello)])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    server = tornado.httpserver.HTTPServer(app)
    server.add_socket(listener)
    port = listener.getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (b"POST /webhooks/telnyx HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")

    async def one() -> None:
        writer.write(request)
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)

    for _ in range(200):  # warm-up
        await one()
    started = time.process_time()
    for _ in range(count):
        await one()
    spent = time.process_time() - started
    writer.close()
    server.stop()
    return spent / count * 1e6


def _per_call(fn: Callable[[], Any], count: int) -> float:
    for _ in range(min(count, 1000)):
        fn()
    started = time.process_time()
    for _ in range(count):
        fn()
    return (time.process_time() - started) / count * 1e6


def _enqueue_and_run(count: int) -> tuple[float, float]:
    from workers import ops
    task = ops.ping.s("bench")
    parent = tracing._tracer

    def enqueue() -> None:
        with tracing.producing(task.name, "bench"):
            queue.huey.serialize_task(task)

    def traced_enqueue() -> None:  # an enqueue happens inside a request's span
        if parent is None:
            enqueue()
            return
        with parent.start_as_current_span("request"):
            enqueue()

    carrier = tracing.inject() or {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}

    def run() -> None:
        with tracing.consuming(task.name, task.id, carrier):
            pass
    return _per_call(traced_enqueue, count), _per_call(run, count)


def _measure(settings: Settings, on: bool, requests: int, tasks: int) -> dict[str, Any]:
    exporter = EncodeAndDrop()
    if on:
        tracing.configure(settings, "bench", exporter=exporter)
    else:
        tracing.shutdown()
    try:
        request_us = asyncio.run(_requests(requests))
        enqueue_us, run_us = _enqueue_and_run(tasks)
        started = time.process_time()
        tracing.shutdown()  # flushes the batch: its encoding is part of the cost
        flush_us = (time.process_time() - started) * 1e6
    finally:
        tracing.shutdown()
    return {"tracing": f"on (sample {settings.otel_sample_ratio:g})" if on else "off",
            "request_cpu_us": round(request_us, 1),
            "enqueue_cpu_us": round(enqueue_us, 2), "task_wrapper_cpu_us": round(run_us, 2),
            "final_flush_ms": round(flush_us / 1000, 1), "spans_encoded": exporter.spans}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sample", type=float, default=1.0,
                        help="YWM_OTEL_SAMPLE_RATIO while tracing is on")
    args = parser.parse_args(argv)
    settings = Settings.from_env({"YWM_ENV": "test", "YWM_OTEL_ENDPOINT": "",
                                  "YWM_OTEL_SAMPLE_RATIO": str(args.sample)})
    queue.configure(settings)  # serialize_task needs the instance set up, not Redis
    results = []
    for _ in range(args.rounds):
        for on in (False, True):
            results.append(_measure(settings, on, args.requests, args.tasks))
            print(json.dumps(results[-1]))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tracing_cost.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
