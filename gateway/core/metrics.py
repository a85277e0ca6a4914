"""Prometheus metrics (prometheus-client): the definitions and the cheap hooks the request
path calls. The exposition (`/metrics`, the separate port, several workers) is
gateway.http.metrics.

Every label has a bounded set of values, whatever clients send:

- `route`: the path template of the route that answered (`/graphql`, `/auth/login`,
  `/static/{path:path}`), `unmatched` for any other path;
- `operation`: the GraphQL operation's name when it is a registered document's
  (web/documents) or, in a single process, one of the first `MAX_OPERATION_NAMES` other
  names it has seen (at most `MAX_LABEL_CHARS` long, nothing the log redaction would
  mask: no SNILS-, phone- or date-like digits), `other` beyond; empty without an
  operation. With several workers (multiprocess mode) only registered names: each worker
  would take its own first names, and a restarted worker's files are added up for as
  long as the folder lives, so any per-process budget would grow without bound;
- `code`: the first error's `extensions.code` when it is one of `ErrorCode`'s, `OTHER`
  for any other code, empty without an error;
- `loader`, `pool`, `method`, `outcome`: names from the code (classes, pools, sign-in
  methods, ErrorCode values), never data.

No label ever carries an account, a student, a token, a SNILS, a phone or a login.

Values that are states rather than events (pool connections, the audit queue, the
response cache's counts) are read by a `Sampler` when metrics are exposed, and every
`SAMPLE_INTERVAL_S` seconds where another process or thread exposes them (several
workers, the separate port).

With several worker processes prometheus-client keeps every value in files under
`PROMETHEUS_MULTIPROC_DIR` (read when the library is first imported); the gauges say
how workers add up (`multiprocess_mode`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from gateway.core.db import StatementCounter, counting_statements, current_statement_counter
from gateway.core.errors import ErrorCode
from gateway.core.logging import redact

log = logging.getLogger(__name__)

MAX_OPERATION_NAMES: Final = 100
MAX_LABEL_CHARS: Final = 64
OTHER: Final = "other"
OTHER_CODE: Final = "OTHER"
UNMATCHED_ROUTE: Final = "unmatched"
SAMPLE_INTERVAL_S: Final = 1.0
_CODES: Final = frozenset(code.value for code in ErrorCode)
_ERROR_CODE_KEY: Final = "metrics_error_code"
# Sign-in methods and the outcome of a sign-in that succeeded (auth.store.audit).
_SIGN_IN_METHODS: Final = frozenset({"ESIA", "PASSWORD", "REFRESH", "CLIENT"})
_SIGNED_IN: Final = "SIGNED_IN"

# No `_created` series (a second series per counter and histogram child; the
# multiprocess mode has none either).
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "school_gateway_requests",
    "HTTP requests answered, by route, GraphQL operation, HTTP status and error code.",
    ["route", "operation", "status", "code"],
)
REQUEST_SECONDS = Histogram(
    "school_gateway_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, seconds.",
    ["route", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REQUEST_STATEMENTS = Histogram(
    "school_gateway_request_sql_statements",
    "SQL statements sent to the database while a request was served.",
    ["route"],
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100),
)
RESPONSE_CACHE = Counter(
    "school_gateway_response_cache_lookups",
    "Response cache lookups of cacheable queries, by result (hit or miss).",
    ["result"],
)
RESPONSE_CACHE_ENTRIES = Gauge(
    "school_gateway_response_cache_entries",
    "Responses held by the response cache (summed over live worker processes).",
    multiprocess_mode="livesum",
)
LOADER_BATCH = Histogram(
    "school_gateway_loader_batch_size",
    "Keys per loader batch (one batched SQL read), by loader.",
    ["loader"],
    buckets=(1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000),
)
SIGN_INS = Counter(
    "school_gateway_sign_ins",
    "Sign-in attempts by method (ESIA, PASSWORD, REFRESH, CLIENT) and outcome code.",
    ["method", "outcome"],
)
POOL_CONNECTIONS = Gauge(
    "school_gateway_db_pool_connections",
    "Open database connections by pool and state (in_use, idle).",
    ["pool", "state"],
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "school_gateway_db_pool_max_connections",
    "The most connections a pool may open (summed over live worker processes).",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "school_gateway_db_pool_waiting",
    "Tasks waiting for a connection of the pool (every connection in use).",
    ["pool"],
    multiprocess_mode="livesum",
)
AUDIT_QUEUE = Gauge(
    "school_gateway_audit_queue_depth",
    "Sign-in events and access-audit records queued or being written.",
    multiprocess_mode="livesum",
)
AUDIT_DROPPED = Counter(
    "school_gateway_audit_dropped",
    "Audit records dropped (queue overflow, refused batches, unwritten at shutdown).",
)
AUDIT_WRITTEN = Counter(
    "school_gateway_audit_written",
    "Audit records (sign-in events and access audit) written to the database.",
)
ANALYTICS_REFRESH_SECONDS = Histogram(
    "school_gateway_analytics_refresh_duration_seconds",
    "Duration of the analytics pre-aggregation refreshes this process ran, seconds.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
ANALYTICS_REFRESHED_NAME: Final = "school_gateway_analytics_refreshed_timestamp_seconds"
ANALYTICS_REFRESHED = Gauge(
    ANALYTICS_REFRESHED_NAME,
    "When the analytics pre-aggregation was last refreshed (by any process), as last seen.",
    multiprocess_mode="max",
)
# Computed at exposition from ANALYTICS_REFRESHED (gateway.http.metrics).
ANALYTICS_AGE_NAME: Final = "school_gateway_analytics_refresh_age_seconds"


# --- labels ----------------------------------------------------------------------------


class OperationLabels:
    """Operation names as label values: the registered ones, then the first `limit` other
    names seen (of at most `MAX_LABEL_CHARS`, with nothing `redact` would mask), `OTHER`
    for the rest."""

    def __init__(self, registered: Iterable[str] = (), limit: int = MAX_OPERATION_NAMES) -> None:
        self._known = set(registered)
        self._room = limit

    def __call__(self, name: str | None) -> str:
        if name is None:
            return ""
        if name in self._known:
            return name
        if self._room > 0 and len(name) <= MAX_LABEL_CHARS and redact(name) == name:
            self._room -= 1
            self._known.add(name)
            return name
        return OTHER


def bounded_code(code: object) -> str:
    """An error code as a label value: an `ErrorCode` value, else `OTHER_CODE`."""
    return code if isinstance(code, str) and code in _CODES else OTHER_CODE


def note_error_code(scope: MutableMapping[str, Any], code: str) -> None:
    """Remember a request's error code (its first) in the ASGI scope for the request metrics."""
    state = scope.setdefault("state", {})
    if _ERROR_CODE_KEY not in state:
        state[_ERROR_CODE_KEY] = code


def note_errors(scope: MutableMapping[str, Any], errors: Iterable[Mapping[str, Any]]) -> None:
    """Remember the code of the first of these formatted GraphQL errors that has one."""
    for error in errors:
        extensions = error.get("extensions")
        if isinstance(extensions, Mapping) and "code" in extensions:
            note_error_code(scope, str(extensions["code"]))
            return


def error_code_of(scope: Mapping[str, Any]) -> str:
    """The label of the error code noted for a request (empty when none was)."""
    state = scope.get("state")
    if isinstance(state, Mapping) and _ERROR_CODE_KEY in state:
        return bounded_code(state[_ERROR_CODE_KEY])
    return ""


# --- the request path ------------------------------------------------------------------


@dataclass(slots=True)
class Measured:
    """A request being measured: the statement counter it counts in and where it began."""

    counter: StatementCounter
    first: int
    counting: AbstractContextManager[StatementCounter] | None


class RequestMetrics:
    """One per application: counts a finished request. The label children are kept by
    their label values (bounded), so a request costs two dictionary lookups, a counter
    increment and two histogram observations."""

    def __init__(self, operations: OperationLabels, default_route: str = UNMATCHED_ROUTE) -> None:
        self.operations = operations
        self.default_route = default_route
        self._counters: dict[tuple[str, str, int, str], Any] = {}
        self._timings: dict[tuple[str, str], tuple[Any, Any]] = {}

    @staticmethod
    def start() -> Measured:
        """Count the request's SQL statements (in the counter already current, a test's,
        or a fresh one)."""
        counter = current_statement_counter()
        if counter is not None:
            return Measured(counter, counter.count, None)
        counting = counting_statements()
        return Measured(counting.__enter__(), 0, counting)

    def finish(
        self,
        measured: Measured,
        scope: Mapping[str, Any],
        operation_name: str | None,
        status: int,
        seconds: float,
    ) -> None:
        """Count the finished request. asyncpg reports a statement with `call_soon`, so
        the last ones may not be counted yet: the observation is scheduled after them."""
        if measured.counting is not None:
            measured.counting.__exit__(None, None, None)
        route = getattr(scope.get("route"), "path", None) or self.default_route
        code = error_code_of(scope)
        asyncio.get_running_loop().call_soon(
            self._observe, route, operation_name, status, code, seconds, measured
        )

    def _observe(
        self,
        route: str,
        operation_name: str | None,
        status: int,
        code: str,
        seconds: float,
        measured: Measured,
    ) -> None:
        operation = self.operations(operation_name)
        key = (route, operation, status, code)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = REQUESTS.labels(route, operation, str(status), code)
        counter.inc()
        timing = self._timings.get((route, operation))
        if timing is None:
            timing = (REQUEST_SECONDS.labels(route, operation), REQUEST_STATEMENTS.labels(route))
            self._timings[(route, operation)] = timing
        timing[0].observe(seconds)
        timing[1].observe(measured.counter.count - measured.first)


_loader_batches: dict[str, Any] = {}


def observe_loader_batch(loader: str, size: int) -> None:
    """A loader's batch of `size` keys (`loader`: its class name)."""
    child = _loader_batches.get(loader)
    if child is None:
        child = _loader_batches[loader] = LOADER_BATCH.labels(loader)
    child.observe(size)


def count_sign_in(method: str, outcome: str) -> None:
    """One sign-in attempt and its outcome (SIGNED_IN or an ErrorCode value)."""
    method_label = method if method in _SIGN_IN_METHODS else OTHER_CODE
    outcome_label = outcome if outcome == _SIGNED_IN else bounded_code(outcome)
    SIGN_INS.labels(method_label, outcome_label).inc()


def analytics_refreshed(refreshed_at: datetime, duration_ms: int | None = None) -> None:
    """The analytics units as last seen (`refreshed_at`); `duration_ms` when this process
    ran the refresh."""
    ANALYTICS_REFRESHED.set(refreshed_at.timestamp())
    if duration_ms is not None:
        ANALYTICS_REFRESH_SECONDS.observe(duration_ms / 1000)


# --- sampled states --------------------------------------------------------------------


class PoolLike(Protocol):
    """What the sampler reads of an asyncpg pool."""

    def get_size(self) -> int: ...

    def get_idle_size(self) -> int: ...

    def get_max_size(self) -> int: ...


def pool_waiting(pool: object) -> int:
    """Tasks waiting in `pool.acquire()` for a connection: the waiters of asyncpg's
    queue of connection holders (asyncio.Queue keeps them in `_getters` until they get
    one or give up); 0 when that queue is not there (a closed pool)."""
    getters = getattr(getattr(pool, "_queue", None), "_getters", None)
    return len(getters) if getters is not None else 0


@dataclass(slots=True)
class _Delta:
    """A counter that follows a running total kept elsewhere (it only grows)."""

    counter: Any
    total: Callable[[], int]
    seen: int = 0

    def sample(self) -> None:
        now = self.total()
        if now > self.seen:
            self.counter.inc(now - self.seen)
        self.seen = max(now, self.seen)


@dataclass(slots=True)
class Sampler:
    """Reads states kept elsewhere into the metrics: pools, the audit recorder, the
    response cache (added by the application's assembler). `sample()` costs a few
    attribute reads per source."""

    pools: dict[str, Callable[[], PoolLike | None]] = field(default_factory=dict)
    gauges: list[tuple[Any, Callable[[], float]]] = field(default_factory=list)
    deltas: list[_Delta] = field(default_factory=list)

    def add_pool(self, name: str, pool: Callable[[], PoolLike | None]) -> None:
        self.pools[name] = pool

    def add_gauge(self, gauge: Any, value: Callable[[], float]) -> None:
        self.gauges.append((gauge, value))

    def add_total(self, counter: Any, total: Callable[[], int]) -> None:
        """`counter` follows `total`, a count that only grows."""
        self.deltas.append(_Delta(counter, total, total()))

    def sample(self) -> None:
        for name, get in self.pools.items():
            pool = get()
            if pool is None:
                continue
            size, idle = pool.get_size(), pool.get_idle_size()
            POOL_CONNECTIONS.labels(name, "in_use").set(size - idle)
            POOL_CONNECTIONS.labels(name, "idle").set(idle)
            POOL_MAX.labels(name).set(pool.get_max_size())
            POOL_WAITING.labels(name).set(pool_waiting(pool))
        for gauge, value in self.gauges:
            gauge.set(value())
        for delta in self.deltas:
            delta.sample()

    async def run(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        """Sample every `interval_s` seconds until cancelled; a failed sample is logged
        with its traceback and the next one is taken (the gauges would freeze silently)."""
        while True:
            try:
                self.sample()
            # The loop's boundary: whatever a source raised (a bug), not a reason to stop
            # sampling every other source; logged with its traceback.
            except Exception:
                log.exception("metrics sampling failed")
            await asyncio.sleep(interval_s)
