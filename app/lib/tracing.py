"""OpenTelemetry tracing: on when OTEL_EXPORTER_OTLP_ENDPOINT is set (or a test installs an exporter).

Requests are traced by Litestar's OpenTelemetryPlugin, database calls by the asyncpg instrumentation,
and the trace context travels from the request into the SAQ job it enqueues (W3C `traceparent` in the
job's meta), so one trace shows request -> job -> database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

_enabled = False


def tracing_enabled() -> bool:
    return _enabled


def configure_tracing(exporter: Any | None = None, service_name: str = "tradedesk") -> bool:
    """Install a tracer provider once per process. Returns whether tracing is on."""
    global _enabled
    if _enabled:
        return True
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument()
    _enabled = True
    return True


def litestar_plugin() -> Any | None:
    if not _enabled:
        return None
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    return OpenTelemetryPlugin(OpenTelemetryConfig(exclude=["/health", "/ready", "/metrics"]))


def inject_into(meta: dict[str, Any]) -> dict[str, Any]:
    """Add the current trace context and request id to a job's meta, so the job's log lines and spans
    lead back to the request that enqueued it."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id is not None:
        meta = {**meta, "request_id": request_id}
    if _enabled:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            meta = {**meta, "trace": carrier}
    return meta


@contextmanager
def job_span(name: str, meta: dict[str, Any] | None) -> Iterator[None]:
    """Run a job inside a span that continues the trace of the request that enqueued it."""
    if not _enabled:
        yield
        return
    parent = propagate.extract((meta or {}).get("trace") or {})
    token = otel_context.attach(parent)
    try:
        with trace.get_tracer("tradedesk.jobs").start_as_current_span(f"job {name}", kind=trace.SpanKind.CONSUMER):
            yield
    finally:
        otel_context.detach(token)
