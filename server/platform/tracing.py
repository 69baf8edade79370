"""OpenTelemetry tracing: one trace from a webhook or an API send, through the Huey task,
to the carrier's HTTP call, and a link from the delivery receipt back to it.

Off unless `YWM_OTEL_ENDPOINT` is set (`configure`): then nothing is instrumented, no
provider exists, and every helper here returns after one test of a module global, so a
box without a collector pays next to nothing (docs/benchmarks.md, "Issue 14: tracing
cost"). On, each process exports its spans over OTLP/HTTP in batches, as service
`ywm-<kind>` (`ywm-web`, `ywm-worker`).

Where spans come from:
- Tornado's instrumentation: one SERVER span per request, continuing a `traceparent` the
  caller sent (NGINX passes it through);
- server/platform/queue.py: a PRODUCER span around every enqueue, whose W3C context
  travels inside the task's JSON message, and a CONSUMER span around every task run,
  parented on it (`producing`, `inject`, `consuming`);
- aiohttp's trace hooks on the carrier session (server/carriers/http.py): one CLIENT span
  per carrier call (`aiohttp_trace_configs`);
- receipts: the send remembers its trace context in Redis under the carrier's message id
  (`remember_send`); the receipt webhook's span gets a link to it (`link_receipt`), since
  a carrier's receipt carries no trace context of ours (docs/decisions.md, "Tracing").
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from server.platform.redis import church_key
from server.platform.settings import Settings

log = logging.getLogger("ywm.tracing")

# The queue's messaging attributes (OpenTelemetry semantic conventions, messaging.*).
MESSAGING_SYSTEM = "huey"
# How long a send's trace context waits for its receipts: carriers post the last one
# (`delivered`/`failed`) within hours; two days also covers a weekend's carrier delays.
RECEIPT_LINK_TTL_SECONDS = 2 * 86_400
OTLP_TRACES_PATH = "/v1/traces"

_propagator = TraceContextTextMapPropagator()  # W3C traceparent/tracestate, nothing else
_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None  # None: tracing is off
_instrumented: list[Any] = []


def enabled() -> bool:
    return _tracer is not None


def configure(settings: Settings, kind: str, exporter: SpanExporter | None = None,
              batch: bool = True) -> bool:
    """Start tracing this process as service `ywm-<kind>`; returns whether it is on.

    Without `exporter`, spans go over OTLP/HTTP to `YWM_OTEL_ENDPOINT` (the collector's
    base URL; `/v1/traces` is added), and an empty endpoint turns tracing off. Tests and
    benchmarks pass their own exporter. Exports are batched in a background thread
    unless `batch=False` (tests: each span is exported as it ends)."""
    if exporter is None and not settings.otel_endpoint:
        shutdown()
        return False
    if exporter is None:
        exporter = _otlp_exporter(settings.otel_endpoint)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"ywm-{kind}",
                                  "service.namespace": "ywm"}),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio)))
    provider.add_span_processor(
        SimpleSpanProcessor(exporter) if not batch else BatchSpanProcessor(exporter))
    with _lock:
        _stop_locked()
        global _provider, _tracer
        _provider, _tracer = provider, provider.get_tracer("ywm")
        _instrument_tornado(provider)
    log.info("tracing on: service ywm-%s, sampling %.3g", kind, settings.otel_sample_ratio)
    return True


def shutdown() -> None:
    """Export what is buffered, undo the instrumentation, and turn tracing off."""
    with _lock:
        _stop_locked()


def _stop_locked() -> None:
    global _provider, _tracer
    for instrumentor in _instrumented:
        instrumentor.uninstrument()
    _instrumented.clear()
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    url = endpoint.rstrip("/")
    if not url.endswith(OTLP_TRACES_PATH):
        url += OTLP_TRACES_PATH
    return OTLPSpanExporter(endpoint=url)


def _instrument_tornado(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.tornado import TornadoInstrumentor
    instrumentor = TornadoInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    _instrumented.append(instrumentor)


def aiohttp_trace_configs() -> list[Any]:
    """Trace hooks for a new aiohttp session: one CLIENT span per request, its context
    sent as `traceparent`; none while tracing is off (the session then pays nothing)."""
    provider = _provider
    if provider is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config
    return [create_trace_config(tracer_provider=provider)]


# The task queue (server/platform/queue.py calls these).

@contextlib.contextmanager
def producing(task_name: str, queue_name: str) -> Iterator[None]:
    """A PRODUCER span around one enqueue made by traced work (its context is what
    `inject` writes); none outside a trace (a scheduler moving a task that fell due)."""
    tracer = _tracer
    if tracer is None or not trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with tracer.start_as_current_span(
            f"{task_name} publish", kind=SpanKind.PRODUCER,
            attributes={"messaging.system": MESSAGING_SYSTEM,
                        "messaging.destination.name": queue_name,
                        "messaging.operation.type": "send"}):
        yield


def inject() -> dict[str, str] | None:
    """The current trace context as W3C headers, for a queued task; None when off."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def consuming(task_name: str, task_id: str, carrier: Mapping[str, str] | None
              ) -> Iterator[None]:
    """A CONSUMER span around one task run, the child of the span that enqueued it."""
    tracer = _tracer
    if tracer is None:
        yield
        return
    parent = _propagator.extract(carrier) if carrier else None
    with tracer.start_as_current_span(
            task_name, context=parent, kind=SpanKind.CONSUMER,
            attributes={"messaging.system": MESSAGING_SYSTEM,
                        "messaging.operation.type": "process",
                        "messaging.message.id": task_id}):
        yield


# Delivery receipts.

def traceparent() -> str | None:
    """The current span's W3C `traceparent`, or None (off, or no span)."""
    carrier = inject()
    return carrier.get("traceparent") if carrier else None


def _send_key(church_id: Any, provider: str, provider_message_id: str) -> str:
    return church_key(church_id, "trace", provider, provider_message_id)


async def remember_send(redis: Any, church_id: Any, provider: str,
                        provider_message_id: str | None) -> None:
    """Keep the current trace context under the carrier's message id, so its receipts
    can link back to this send's trace. Only while tracing is on; best effort."""
    value = traceparent()
    if value is None or not provider_message_id:
        return
    try:
        await redis.set(_send_key(church_id, provider, provider_message_id), value,
                        ex=RECEIPT_LINK_TTL_SECONDS)
    except Exception:  # noqa: BLE001 - a lost link never fails a send
        log.debug("could not remember a send's trace context", exc_info=True)


async def link_receipt(redis: Any, church_id: Any, provider: str,
                       provider_message_id: str) -> bool:
    """Link the current span (a receipt webhook's) to the trace of the send it is about."""
    if _tracer is None:
        return False
    span = trace.get_current_span()
    if not span.is_recording():
        return False
    try:
        value = await redis.get(_send_key(church_id, provider, provider_message_id))
    except Exception:  # noqa: BLE001 - a lost link never fails a receipt
        log.debug("could not read a send's trace context", exc_info=True)
        return False
    if not value:
        return False
    text = value.decode() if isinstance(value, bytes) else str(value)
    sent = trace.get_current_span(_propagator.extract({"traceparent": text})).get_span_context()
    if not sent.is_valid:
        return False
    span.add_link(sent, {"ywm.link": "send"})
    return True
