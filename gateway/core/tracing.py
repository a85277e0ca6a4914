"""OpenTelemetry tracing: a server span per HTTP request, a span per GraphQL operation, a
child span per loader batch and per SQL statement; W3C `traceparent` honoured.

Off unless the standard `OTEL_*` variables ask for it (`tracing_from_env`): an OTLP
endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or
`OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`); `OTEL_SDK_DISABLED=true` wins. The
SDK itself reads the rest: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_EXPORTER_OTLP_*` headers/timeouts, `OTEL_BSP_*`.

While tracing is off every hook is one attribute test (`_tracer is None`). Spans carry no
personal data: no variables, no query string, no ids of accounts or students; SQL text
is the statement with its `$n` placeholders (the gateway's SQL has no literals of data).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from gateway.core.logging import safe_operation_name
from gateway.core.settings import SettingsError

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME: Final = "school-gateway"
SERVICE_NAME: Final = "school-gateway"
# Longest SQL text put on a span (the gateway's statements are shorter; a bound all the same).
MAX_STATEMENT_CHARS: Final = 2000
_EXPORTERS: Final = ("otlp", "console", "none")
# The SDK's samplers (OTEL_TRACES_SAMPLER); it would take any other name, or a ratio that
# is not a number, as "sample everything" with a warning: refused here instead.
_SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_RATIO_SAMPLERS: Final = ("traceidratio", "parentbased_traceidratio")
_PROTOCOL_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
_PROPAGATOR: Final = TraceContextTextMapPropagator()

_tracer: Tracer | None = None
# Whether the request this context serves is sampled: one lookup decides, for the spans
# under an unsampled request (most of them), that nothing is to be recorded.
_RECORDING: ContextVar[bool] = ContextVar("tracing_recording", default=False)
_provider: TracerProvider | None = None


class TracingConfigError(SettingsError):
    """An `OTEL_*` variable the gateway cannot honour (refused at start, named)."""


def exporter_from_env(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter the `OTEL_*` variables ask for; None when tracing stays off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n]
    unknown = [name for name in names if name not in _EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={','.join(unknown)}: supported are {', '.join(_EXPORTERS)}"
        )
    if len(names) > 1:
        raise TracingConfigError("OTEL_TRACES_EXPORTER: one exporter at a time")
    _check_sampler(env)
    for variable in _PROTOCOL_VARIABLES:
        protocol = env.get(variable, "").strip()
        if protocol and protocol != "http/protobuf":
            raise TracingConfigError(f"{variable}={protocol}: only http/protobuf is supported")
    endpoint_set = bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    name = names[0] if names else ("otlp" if endpoint_set else "none")
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression from OTEL_*


def _check_sampler(env: Mapping[str, str]) -> None:
    """OTEL_TRACES_SAMPLER one of the SDK's, and a ratio sampler's argument in [0, 1]."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not sampler:
        return
    if sampler not in _SAMPLERS:
        raise TracingConfigError(
            f"OTEL_TRACES_SAMPLER={sampler}: supported are {', '.join(_SAMPLERS)}"
        )
    argument = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if sampler in _RATIO_SAMPLERS and argument:
        try:
            ratio = float(argument)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise TracingConfigError(
                f"OTEL_TRACES_SAMPLER_ARG={argument}: a ratio from 0 to 1, e.g. 0.1"
            )


def tracing_from_env(env: Mapping[str, str]) -> TracerProvider | None:
    """A provider exporting in batches as the `OTEL_*` variables say, or None (off).
    The sampler is the SDK's reading of OTEL_TRACES_SAMPLER (default: parent-based,
    always on)."""
    exporter = exporter_from_env(env)
    if exporter is None:
        return None
    return provider_with(BatchSpanProcessor(exporter))


def provider_with(processor: SpanProcessor) -> TracerProvider:
    """A provider of this service: `school-gateway` unless OTEL_SERVICE_NAME or
    OTEL_RESOURCE_ATTRIBUTES name it."""
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    return provider


def install(provider: TracerProvider | None) -> None:
    """Make `provider` the one the gateway's spans go to (None: tracing off)."""
    global _tracer, _provider
    previous, _provider = _provider, provider
    if previous is not None and previous is not provider:
        previous.shutdown()
    _tracer = None if provider is None else provider.get_tracer(INSTRUMENTATION_NAME)


def shutdown() -> None:
    """Flush and stop the installed provider (the SDK also does it at exit)."""
    install(None)


def enabled() -> bool:
    return _tracer is not None


@contextmanager
def request_span(
    method: str, path: str, headers: list[tuple[bytes, bytes]] | None
) -> Iterator[Span | None]:
    """The server span of one HTTP request, child of the caller's `traceparent` when it
    sends one, made current for the request's tasks when it is sampled (None when not:
    nothing under it is recorded, at the cost of one sampling decision). The caller sets
    the status code (`finish_request`). `headers` None: not traced (an event stream)."""
    tracer = _tracer
    if tracer is None or headers is None:
        yield None
        return
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name in (b"traceparent", b"tracestate")
    }
    parent = _PROPAGATOR.extract(carrier) if carrier else None
    attributes: dict[str, AttributeValue] = {"http.request.method": method, "url.path": path}
    span = tracer.start_span(
        f"{method} {path}", context=parent, kind=SpanKind.SERVER, attributes=attributes
    )
    if not span.is_recording():
        yield None
        return
    attached = otel_context.attach(trace.set_span_in_context(span))
    recording = _RECORDING.set(True)
    try:
        yield span
    except BaseException:
        span.set_status(trace.StatusCode.ERROR)
        raise
    finally:
        _RECORDING.reset(recording)
        otel_context.detach(attached)
        span.end()


def finish_request(span: Span | None, status: int, operation_name: str | None) -> None:
    """What the request span learns at the end: the status, the operation it ran."""
    if span is None or not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status)
    shown = safe_operation_name(operation_name)
    if shown is not None:
        span.set_attribute("graphql.operation.name", shown)
    if status >= 500:
        span.set_status(trace.StatusCode.ERROR)


@contextmanager
def operation_span(operation_type: str, operation_name: str | None) -> Iterator[None]:
    """A span around one GraphQL operation's cost check, cache lookup and execution."""
    tracer = _tracer
    if tracer is None or not _RECORDING.get() or not trace.get_current_span().is_recording():
        yield
        return
    attributes: dict[str, AttributeValue] = {"graphql.operation.type": operation_type}
    shown = safe_operation_name(operation_name)
    if shown is not None:
        attributes["graphql.operation.name"] = shown
    name = f"{operation_type} {shown}" if shown else operation_type
    # No exception events: an error's message may carry the statement's arguments.
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False):
        yield


@contextmanager
def loader_span(loader: str, batch_size: int) -> Iterator[None]:
    """A span around one loader batch; its SQL statements become its children."""
    tracer = _tracer
    if tracer is None or not _RECORDING.get() or not trace.get_current_span().is_recording():
        yield
        return
    attributes: dict[str, AttributeValue] = {"loader.name": loader, "loader.batch_size": batch_size}
    with tracer.start_as_current_span(
        f"loader {loader}", attributes=attributes, record_exception=False
    ):
        yield


def statement_span(query: str, elapsed_s: float, failed: bool) -> None:
    """Record a finished SQL statement as a child of the current span (asyncpg's query
    logger calls this right after the statement, in the caller's context)."""
    tracer = _tracer
    if tracer is None or not _RECORDING.get() or not trace.get_current_span().is_recording():
        return
    end = time.time_ns()
    span = tracer.start_span(
        _statement_name(query),
        kind=SpanKind.CLIENT,
        start_time=end - int(elapsed_s * 1e9),
        attributes={
            "db.system.name": "postgresql",
            "db.query.text": query[:MAX_STATEMENT_CHARS],
        },
    )
    if failed:
        span.set_status(trace.StatusCode.ERROR)
    span.end(end_time=end)


def _statement_name(query: str) -> str:
    """`SELECT`, `INSERT`, … — the statement's first keyword (a low-cardinality name)."""
    words = query.lstrip(" \t\n(").split(None, 1)
    return f"sql {words[0].upper()}" if words else "sql"
