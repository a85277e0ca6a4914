"""OpenTelemetry tracing (gateway.core.tracing, issue 15): through the real app, a request
with a W3C `traceparent` makes a server span in the caller's trace, a span for its GraphQL
operation, spans for the loader batches and one span per SQL statement under them — with
no personal data in any span; through a real `serve` process, spans reach an OTLP/HTTP
collector configured only by the standard `OTEL_*` variables; off without them."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fixtures.demo import demo_account
from gateway.core import tracing
from gateway.core.settings import SettingsError
from tests.support.environment import TODAY
from tests.support.serve_process import command_env, free_port, serving

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
# A window no other test asks for: the response cache cannot answer it without SQL.
MONDAY = TODAY - timedelta(days=TODAY.weekday() + 7 * 9)
WEEK = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=6)).isoformat()}
CHILDREN_WEEK = """
query ChildrenWeek($from: Date, $to: Date) {
  myChildren {
    fullName
    marks(first: 5) { value }
    diary(from: $from, to: $to) { days { date lessons { subject { name } topic } } }
  }
}
"""


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test only, every span kept in memory as it ends."""
    exporter = InMemorySpanExporter()
    tracing.install(tracing.provider_with(SimpleSpanProcessor(exporter)))
    try:
        yield exporter
    finally:
        tracing.install(None)


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id if parent.context is not None else None
    return [span for span in spans if span.parent is not None and span.parent.span_id == parent_id]


def _tree(spans: list[ReadableSpan]) -> str:
    """The spans as an indented tree (printed when a test fails)."""
    ids = {span.context.span_id for span in spans if span.context is not None}
    roots = [span for span in spans if span.parent is None or span.parent.span_id not in ids]
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        lines.append("  " * depth + span.name)
        for child in _children(spans, span):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


async def test_a_request_is_a_span_tree_in_the_callers_trace(
    client: httpx.AsyncClient, tokens: dict[str, str], exported: InMemorySpanExporter
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": CHILDREN_WEEK, "variables": WEEK},
        headers={
            "Authorization": f"Bearer {tokens['parent-two-schools']}",
            "traceparent": TRACEPARENT,
        },
    )
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    spans = list(exported.get_finished_spans())
    print(_tree(spans))
    assert {format(s.context.trace_id, "032x") for s in spans if s.context} == {TRACE_ID}

    server = _one(spans, "POST /graphql")
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN_ID
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["graphql.operation.name"] == "ChildrenWeek"
    operation = _one(spans, "query ChildrenWeek")
    not_sql = [span for span in _children(spans, server) if not span.name.startswith("sql ")]
    assert not_sql == [operation]

    under_operation = _children(spans, operation)
    loaders = [span for span in under_operation if span.name.startswith("loader ")]
    assert {"loader MarkPageByFilterLoader", "loader LessonsByStudentRangeLoader"} <= {
        span.name for span in loaders
    }
    for loader in loaders:
        statements = _children(spans, loader)
        assert statements, f"{loader.name} has no SQL span"
        texts = []
        for statement in statements:
            assert statement.name.startswith("sql ")
            assert statement.attributes is not None
            assert statement.attributes["db.system.name"] == "postgresql"
            texts.append(str(statement.attributes["db.query.text"]))
            assert statement.start_time is not None and statement.end_time is not None
            assert loader.start_time is not None and loader.end_time is not None
            assert loader.start_time <= statement.start_time <= statement.end_time
            assert statement.end_time <= loader.end_time
        # The loader's own statement, with its parameters as placeholders only.
        assert any("$1" in text for text in texts), texts
    # The viewer's own statements (before execution) hang from the server span.
    assert any(span.name.startswith("sql ") for span in _children(spans, server))


async def test_no_personal_data_in_spans(
    client: httpx.AsyncClient, tokens: dict[str, str], exported: InMemorySpanExporter
) -> None:
    token = tokens["parent-two-schools"]
    response = await client.post(
        "/graphql",
        json={"query": CHILDREN_WEEK, "variables": WEEK},
        headers={"Authorization": f"Bearer {token}"},
    )
    children = response.json()["data"]["myChildren"]
    account = demo_account("parent-two-schools")
    secrets = [token, account.snils, *(child["fullName"] for child in children)]
    secrets += [part for child in children for part in child["fullName"].split()]
    secrets = [value for value in secrets if value]
    assert len(secrets) >= 4
    for span in exported.get_finished_spans():
        text = span.name + repr(dict(span.attributes or {})) + repr(span.events)
        leaked = [value for value in secrets if value in text]
        assert not leaked, f"{span.name} carries {leaked}"


async def test_unsampled_requests_and_event_streams_record_nothing(
    client: httpx.AsyncClient, tokens: dict[str, str], exported: InMemorySpanExporter
) -> None:
    bearer = {"Authorization": f"Bearer {tokens['parent-one-school']}"}
    me = {"query": "query Me { viewer { role } }"}
    unsampled = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-00"  # the caller decided: not sampled
    response = await client.post("/graphql", json=me, headers={**bearer, "traceparent": unsampled})
    assert response.status_code == 200
    assert exported.get_finished_spans() == ()
    # An event stream is not traced (one span would last as long as the stream): here
    # one refused at once, for want of a token.
    stream = await client.post(
        "/graphql",
        json={"query": "subscription { diaryEvents { __typename } }"},
        headers={"Accept": "text/event-stream", "traceparent": TRACEPARENT},
    )
    assert stream.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", stream.text
    assert exported.get_finished_spans() == ()
    sampled = await client.post("/graphql", json=me, headers={**bearer, "traceparent": TRACEPARENT})
    assert sampled.status_code == 200
    assert "query Me" in {span.name for span in exported.get_finished_spans()}
    tracing.install(None)  # off: nothing more reaches the exporter
    exported.clear()
    await client.post("/graphql", json=me, headers={**bearer, "traceparent": TRACEPARENT})
    assert exported.get_finished_spans() == ()


async def test_operation_names_are_masked_like_the_log(
    client: httpx.AsyncClient, tokens: dict[str, str], exported: InMemorySpanExporter
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query Grades_12345678901 { viewer { role } }"},
        headers={
            "Authorization": f"Bearer {tokens['parent-one-school']}",
            "traceparent": TRACEPARENT,
        },
    )
    assert response.status_code == 200
    spans = list(exported.get_finished_spans())
    assert "query Grades_***" in {span.name for span in spans}
    for span in spans:
        text = span.name + repr(dict(span.attributes or {}))
        assert "12345678901" not in text, span.name


def test_the_otel_variables_choose_the_exporter() -> None:
    assert tracing.exporter_from_env({}) is None
    assert tracing.exporter_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert type(tracing.exporter_from_env(endpoint)).__name__ == "OTLPSpanExporter"
    assert tracing.exporter_from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    console = tracing.exporter_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert type(console).__name__ == "ConsoleSpanExporter"
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER=zipkin"):
        tracing.exporter_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    ratio = {**endpoint, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}
    assert tracing.exporter_from_env({**ratio, "OTEL_TRACES_SAMPLER_ARG": "0.1"}) is not None
    # What the SDK would take as "sample everything" (with a warning) is refused by name.
    for bad in ("10%", "1.5", "-0.1"):
        with pytest.raises(SettingsError, match=f"OTEL_TRACES_SAMPLER_ARG={bad}"):
            tracing.exporter_from_env({**ratio, "OTEL_TRACES_SAMPLER_ARG": bad})
    with pytest.raises(SettingsError, match="OTEL_TRACES_SAMPLER=parentbased_ratio"):
        tracing.exporter_from_env({**endpoint, "OTEL_TRACES_SAMPLER": "parentbased_ratio"})
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL=grpc"):
        tracing.exporter_from_env({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


class _Collector(http.server.ThreadingHTTPServer):
    """A real OTLP/HTTP receiver: keeps every ExportTraceServiceRequest POSTed to /v1/traces."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.received = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CollectorHandler(http.server.BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.server.requests.append(request)
            self.server.received.set()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what arrived."""


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _exported_spans(collector: _Collector) -> list[tuple[str, str, str]]:
    """(trace id, span name, service name) of every span the collector received."""
    found = []
    for request in collector.requests:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append((span.trace_id.hex(), span.name, service))
    return found


def test_serve_exports_spans_to_the_otlp_endpoint_of_the_environment(
    database_url: str, tmp_path: Path, collector: _Collector
) -> None:
    env = command_env(
        database_url,
        tmp_path,
        SCHOOL_GATEWAY_DEV="1",
        SCHOOL_GATEWAY_TODAY=TODAY.isoformat(),
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_SERVICE_NAME="gateway-node-7",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    port = free_port()
    with serving(env, port), httpx.Client(base_url=f"http://127.0.0.1:{port}") as http_client:
        response = http_client.post(
            "/graphql",
            json={"query": "query Me { viewer { role } }"},
            headers={"traceparent": TRACEPARENT},
        )
        assert response.status_code in (200, 401), response.text
        assert collector.received.wait(10), "no span reached the collector"
    spans = _exported_spans(collector)
    assert (TRACE_ID, "POST /graphql", "gateway-node-7") in spans, spans


def test_serve_refuses_an_unknown_exporter(database_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = command_env(database_url, tmp_path, OTEL_TRACES_EXPORTER="zipkin")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "OTEL_TRACES_EXPORTER=zipkin" in done.stderr
