"""The Prometheus exposition of the metrics of gateway.core.metrics.

- `SCHOOL_GATEWAY_METRICS` (default on) and `SCHOOL_GATEWAY_METRICS_PATH` (default
  `/metrics`): served by the application on its own port at that path
  (`metrics_routes`), never cached (`Cache-Control: no-store`), without authentication:
  nothing in it is personal, but it is meant for the monitoring only — keep the path
  off the public reverse proxy, or use a separate port.
- `SCHOOL_GATEWAY_METRICS_PORT`: `school-gateway serve` serves the metrics on that port
  instead (a small threaded HTTP server in the serving process, `MetricsListener`), on
  `SCHOOL_GATEWAY_METRICS_HOST` (default 127.0.0.1, not the application's address), and
  the application's port answers the path 404.
- Several workers (`serve --workers N`): prometheus-client's multiprocess mode. `serve`
  points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder (a temporary one, removed at exit,
  or `SCHOOL_GATEWAY_METRICS_DIR`, emptied at start: `multiprocess_folder`) before any
  worker starts (the library reads it when first imported: `serve`'s own process, which
  imported it already, keeps its values in memory); every worker writes its values
  there and an exposition adds them all up
  (`MultiProcessCollector`), whichever worker (or the separate port) answers. Gauges of
  workers that are gone are dropped (`mark_process_dead`) at every exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth.store.audit import Recorder
from gateway.core.metrics import (
    ANALYTICS_AGE_NAME,
    ANALYTICS_REFRESHED_NAME,
    AUDIT_DROPPED,
    AUDIT_QUEUE,
    AUDIT_WRITTEN,
    MAX_OPERATION_NAMES,
    RESPONSE_CACHE,
    RESPONSE_CACHE_ENTRIES,
    OperationLabels,
    PoolLike,
    RequestMetrics,
    Sampler,
)
from gateway.core.metrics_settings import MetricsSettings
from gateway.core.settings_readers import SettingsError
from gateway.http.pages import PAGES
from gateway.http.persisted import DOCUMENT_SUFFIX, DOCUMENTS_DIR, document_files
from gateway.http.response_cache import ResponseCache

log = logging.getLogger(__name__)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"  # set for the workers by `serve`
NO_STORE: Final = {"Cache-Control": "no-store"}
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


class AppMetrics:
    """The metrics of one application: the request accounting for the request middleware
    (`requests`, None when the metrics are off), the sampled states (`sampler`), the
    route (`routes`) and the periodic sampling run by the lifespan (`around`)."""

    def __init__(
        self,
        settings: MetricsSettings,
        *,
        recorder: Recorder,
        response_cache: ResponseCache | None,
        pools: Mapping[str, Callable[[], PoolLike | None]],
    ) -> None:
        self.settings = settings
        self.sampler = Sampler()
        for name, pool in pools.items():
            self.sampler.add_pool(name, pool)
        self.sampler.add_gauge(AUDIT_QUEUE, lambda: recorder.pending)
        self.sampler.add_total(AUDIT_DROPPED, lambda: recorder.dropped)
        self.sampler.add_total(AUDIT_WRITTEN, lambda: recorder.written)
        if response_cache is not None:
            cache = response_cache
            self.sampler.add_total(RESPONSE_CACHE.labels("hit"), lambda: cache.hits)
            self.sampler.add_total(RESPONSE_CACHE.labels("miss"), lambda: cache.misses)
            self.sampler.add_gauge(RESPONSE_CACHE_ENTRIES, lambda: len(cache))
        # Several workers: registered names only (gateway.core.metrics, `operation`).
        limit = 0 if settings.multiproc_dir is not None else MAX_OPERATION_NAMES
        operations = OperationLabels(registered_operation_names(), limit)
        self.requests = RequestMetrics(operations) if settings.enabled else None

    def routes(self) -> list[BaseRoute]:
        """The exposition on the application's port (none when off or on its own port)."""
        return metrics_routes(self.settings, self.sampler)

    def around(self, lifespan: Lifespan) -> Lifespan:
        """`lifespan`, with the states sampled every second while it lasts when another
        process (several workers) or thread (the separate port) exposes them."""
        periodic = self.settings.enabled and (
            self.settings.multiproc_dir is not None or self.settings.port is not None
        )
        if not periodic:
            return lifespan

        @asynccontextmanager
        async def sampled(app: Starlette) -> AsyncIterator[None]:
            async with lifespan(app):
                task = asyncio.create_task(self.sampler.run())
                try:
                    yield
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        return sampled


def registered_operation_names(folder: Path = DOCUMENTS_DIR) -> set[str]:
    """The names of the registered documents (web/documents/<Name>.graphql): always
    label values of their own."""
    if not folder.is_dir():
        return set()
    return {name.removesuffix(DOCUMENT_SUFFIX) for name in document_files(folder)}


# --- what an exposition holds --------------------------------------------------------


class _WithAge(Collector):
    """The metrics of `source`, plus the analytics refresh's age (now minus the last
    refresh seen by any process), computed when collected."""

    def __init__(self, source: Collector) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        refreshed = 0.0
        for metric in self.source.collect():
            if metric.name == ANALYTICS_REFRESHED_NAME:
                refreshed = max((sample.value for sample in metric.samples), default=0.0)
            yield metric
        if refreshed > 0:
            age = GaugeMetricFamily(
                ANALYTICS_AGE_NAME,
                "Seconds since the analytics pre-aggregation was last refreshed (as last seen).",
            )
            age.add_metric([], max(0.0, time.time() - refreshed))
            yield age


class _LiveWorkers(Collector):
    """The multiprocess folder's values, after dropping the live gauges of processes
    that no longer run (a worker restarted by the supervisor, or stopped)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.collector = MultiProcessCollector(None, path=str(folder))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for pid in _dead_pids(self.folder):
            # A concurrent scrape may have removed the files between listing and removal.
            with contextlib.suppress(FileNotFoundError):
                mark_process_dead(pid, str(self.folder))  # type: ignore[no-untyped-call]
        metrics: Iterable[Metric] = self.collector.collect()  # type: ignore[no-untyped-call]
        return metrics


def _dead_pids(folder: Path) -> set[int]:
    pids = set()
    for name in os.listdir(folder):
        match = _LIVE_GAUGE_FILE.match(name)
        if match is not None:
            pids.add(int(match.group(1)))
    return {pid for pid in pids if not _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exposition_registry(multiproc_dir: Path | None) -> CollectorRegistry:
    """What an exposition shows: this process's metrics, or with a multiprocess folder
    those of every worker; plus the analytics refresh's age."""
    source: Collector = REGISTRY if multiproc_dir is None else _LiveWorkers(multiproc_dir)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WithAge(source))
    return registry


# --- on the application's port -------------------------------------------------------


def metrics_routes(settings: MetricsSettings, sampler: Sampler) -> list[BaseRoute]:
    """GET `settings.path` on the application's port: the exposition, the sampled
    states read first; none when the metrics are off or have a port of their own. A web
    page's path is refused."""
    if not settings.enabled or settings.port is not None:
        return []
    if settings.path in PAGES:
        raise SettingsError(f"SCHOOL_GATEWAY_METRICS_PATH {settings.path} is a page's path")
    registry = exposition_registry(settings.multiproc_dir)

    async def metrics(request: Request) -> Response:
        await asyncio.sleep(0)  # requests finished before this one are counted by then
        sampler.sample()
        # Writing ~1,600 series takes ~50 ms of Python: off the event loop, so that the
        # requests it serves meanwhile wait for the GIL's turns, not for the whole scrape.
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, headers={**NO_STORE, "Content-Type": CONTENT_TYPE_LATEST})

    return [Route(settings.path, metrics, methods=["GET"])]


# --- on a port of its own ------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


def metrics_wsgi_app(path: str, registry: CollectorRegistry) -> Callable[..., list[bytes]]:
    """A WSGI application answering GET `path` with the exposition, anything else 404/405."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != path:
            start_response("404 Not Found", [("Content-Type", "text/plain"), *NO_STORE.items()])
            return [b"not found\n"]
        if environ.get("REQUEST_METHOD") != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET"), *NO_STORE.items()])
            return [b""]
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), *NO_STORE.items()])
        return [body]

    return app


class MetricsListener:
    """The metrics on host:port, answered by a thread of this process (the serving
    process: the only worker, or the supervisor of several)."""

    def __init__(self, host: str, port: int, path: str, multiproc_dir: Path | None) -> None:
        self.host = host
        app = metrics_wsgi_app(path, exposition_registry(multiproc_dir))
        server_class = _Server6 if ":" in host else _Server
        self.server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="metrics-listener", daemon=True
        )

    def start(self) -> MetricsListener:
        self.thread.start()
        log.info("metrics served on %s port %d", self.host, self.server.server_port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --- the multiprocess folder ---------------------------------------------------------


@contextlib.contextmanager
def serve_metrics(settings: MetricsSettings, *, port: int, workers: int) -> Iterator[Path | None]:
    """What `school-gateway serve` sets up around its server: the multiprocess folder
    of several workers (`SCHOOL_GATEWAY_METRICS_DIR` or a temporary one) and the separate
    port's listener (on `settings.host`, not the application's address); the folder,
    if any."""
    if not settings.enabled:
        yield None
        return
    if settings.multiproc_dir is not None:
        raise SettingsError(
            f"{MULTIPROC_ENV} is set by serve for its workers: "
            "choose their folder with SCHOOL_GATEWAY_METRICS_DIR"
        )
    if settings.port == port:
        raise SettingsError("SCHOOL_GATEWAY_METRICS_PORT must differ from the serving port")
    with contextlib.ExitStack() as stack:
        folder = None
        if workers > 1:
            folder = stack.enter_context(multiprocess_folder(settings.folder))
        if settings.port is not None:
            listener = MetricsListener(settings.host, settings.port, settings.path, folder)
            stack.callback(listener.start().stop)
        yield folder


@contextlib.contextmanager
def multiprocess_folder(given: Path | None) -> Iterator[Path]:
    """A folder for the workers' values: `given` emptied of earlier runs' files (made if
    missing), or a temporary one removed afterwards; `PROMETHEUS_MULTIPROC_DIR` names it
    for the workers (started later) while the block runs."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        for stale in given.glob("*.db"):
            stale.unlink()
        folder, temporary = given, False
    else:
        folder, temporary = Path(tempfile.mkdtemp(prefix="school-gateway-metrics-")), True
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
