"""OpenTelemetry tracing hooks: the API only (`opentelemetry-api`), no SDK and no exporter.

Without an SDK every tracer is a no-op, so these hooks cost one check per batch or request and
nothing else: `enabled()` is false until a real `TracerProvider` is installed, and the per-record
spans are not even started then (the matcher handles ~10⁵ records/s; a no-op span still costs µs).

To export traces, install the SDK and an exporter in the image and configure them before the
service starts, e.g. with the zero-code launcher (no change in this repository):

    pip install opentelemetry-sdk opentelemetry-exporter-otlp opentelemetry-distro
    OTEL_SERVICE_NAME=matcher OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317 \
        opentelemetry-instrument python -m services.matcher

or in code: `trace.set_tracer_provider(TracerProvider(...))` before `main()`. Spans then appear:

* `process <topic>` around each record the exactly-once loop handles (services/common/bus.py),
  a child of the producer's span when the record carries a W3C `traceparent` header;
* `HTTP <method> <route>` around each request of the instrumented ASGI apps (gateway, metrics).

The outputs of a record carry the `traceparent` of its span (`inject`), so one trace follows an
order through risk and the matcher, next to the correlation id (docs/observability.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind

TRACER_NAME = "cxpt"


def enabled() -> bool:
    """Whether an SDK tracer provider is installed (otherwise spans would be no-ops)."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


def _text_headers(headers: Mapping[str, bytes]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in headers.items()}


@contextmanager
def record_span(topic: str, headers: Mapping[str, bytes], attributes: Mapping[str, Any]) -> Iterator[None]:
    """A consumer span around the handling of one record, parented by its `traceparent` header."""
    tracer = trace.get_tracer(TRACER_NAME)
    parent = propagate.extract(_text_headers(headers))
    with tracer.start_as_current_span(
        f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=dict(attributes)
    ):
        yield


def inject(headers: MutableMapping[str, bytes]) -> None:
    """Add the current span's `traceparent` (and baggage) to Kafka headers, if there is a span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    for key, value in carrier.items():
        headers.setdefault(key, value.encode())


@contextmanager
def http_span(method: str, path: str, headers: Mapping[str, str]) -> Iterator[Any]:
    """A server span around one HTTP request (its route is set once routing has found it)."""
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"HTTP {method}",
        context=propagate.extract(dict(headers)),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path},
    ) as span:
        yield span
