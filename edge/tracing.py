"""OpenTelemetry spans for a request, its decision and each backend attempt.

With tracing off (the default) or the SDK not installed, every call lands on one
shared no-op span: no import, no allocation. Spans are started with an explicit
parent instead of through the ambient context, because the request path is an async
generator whose steps may resume in different tasks, where attaching and detaching a
context would not pair up.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from edge.config import TracingSettings
from edge.errors import ConfigError

__all__ = ["Span", "NOOP", "Tracer", "build_tracer"]

log = logging.getLogger("edge.tracing")


class Span:
    """A no-op span; the OpenTelemetry-backed one below has the same three methods."""

    def child(self, name: str, **attributes: Any) -> Span:
        return self

    def set(self, **attributes: Any) -> None:
        pass

    def end(self, error: BaseException | None = None) -> None:
        pass


NOOP = Span()


class Tracer:
    """Makes root spans; the no-op tracer hands out NOOP."""

    def start(self, name: str, **attributes: Any) -> Span:
        return NOOP

    def shutdown(self) -> None:
        pass


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    # OpenTelemetry takes str, bool, int, float (and sequences of them); drop None.
    return {f"edge.{k}": v for k, v in attributes.items() if v is not None}


class _OtelSpan(Span):
    def __init__(self, tracer: Any, span: Any) -> None:
        self._tracer, self._span = tracer, span

    def child(self, name: str, **attributes: Any) -> Span:
        from opentelemetry import trace

        ctx = trace.set_span_in_context(self._span)
        return _OtelSpan(self._tracer, self._tracer.start_span(name, context=ctx, attributes=_clean(attributes)))

    def set(self, **attributes: Any) -> None:
        self._span.set_attributes(_clean(attributes))

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._span.end()


class _OtelTracer(Tracer):
    def __init__(self, settings: TracingSettings) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        from edge import __version__

        if settings.exporter == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError:
                raise ConfigError("tracing.exporter = 'otlp' needs opentelemetry-exporter-otlp installed") from None
            exporter: Any = OTLPSpanExporter()
        else:
            self._out = sys.stderr if settings.exporter == "console" else open(  # noqa: SIM115 - closed in shutdown
                settings.file, "a", encoding="utf-8")
            exporter = ConsoleSpanExporter(out=self._out, formatter=lambda s: s.to_json(indent=None) + "\n")
        self._provider = TracerProvider(resource=Resource.create(
            {"service.name": settings.service_name, "service.version": __version__}))
        # Batched: exporting never sits on the request path.
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("edge")

    def start(self, name: str, **attributes: Any) -> Span:
        return _OtelSpan(self._tracer, self._tracer.start_span(name, attributes=_clean(attributes)))

    def shutdown(self) -> None:
        self._provider.shutdown()  # flushes what is batched
        out = getattr(self, "_out", None)
        if out is not None and out is not sys.stderr:
            out.close()


def build_tracer(settings: TracingSettings) -> Tracer:
    if not settings.enabled:
        return Tracer()
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise ConfigError("tracing.enabled needs the OpenTelemetry SDK: pip install 'edge[otel]'") from None
    log.info("tracing on", extra={"exporter": settings.exporter})
    return _OtelTracer(settings)
