"""Prometheus metrics (issue 15) over real HTTP: values change exactly as requests are
served; labels stay bounded whatever operation names clients send; the exposition can be
off, elsewhere or on a port of its own; several `serve` workers add up.

The metrics are the process's (prometheus-client's registry), shared by every app the
tests build, so each test compares two scrapes around what it sends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import string
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.generate import SeedSummary
from gateway.app import create_app
from gateway.core.metrics import MAX_OPERATION_NAMES
from gateway.core.metrics_settings import MetricsSettings
from gateway.core.settings import Settings
from tests.support.cli_process import run_command
from tests.support.environment import TODAY, gateway_env
from tests.support.live_server import LiveServer, live_server
from tests.support.password_signin import PlantedStudent
from tests.support.serve_process import command_env, free_port, serving

Labels = frozenset[tuple[str, str]]
LETTERS = string.ascii_letters
Samples = dict[tuple[str, Labels], float]

PROBE = "query MetricsProbe { viewer { role } }"
ANONYMOUS = "query MetricsAnonymous { __typename }"
FORBIDDEN = 'query MetricsForbidden { student(id: "999999") { id } }'
MONDAY = TODAY - timedelta(days=TODAY.weekday())
WEEK_QUERY = """
query MetricsWeek($from: Date!, $to: Date!) {
  myChildren { id diary(from: $from, to: $to) { days { date lessons { id topic
    marks { value } homework { text } attendance { code } } } } }
}
"""
WEEK = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=6)).isoformat()}
ANALYTICS = "query MetricsAnalytics { regionalAnalytics { freshness { refreshedAt } } }"


def parse(text: str) -> Samples:
    """Every sample of an exposition by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**values: str) -> Labels:
    return frozenset(values.items())


def total(samples: Samples, name: str, **match: str) -> float:
    """The sum of `name`'s samples whose labels include `match`."""
    wanted = set(match.items())
    return sum(value for (n, ls), value in samples.items() if n == name and wanted <= ls)


async def scrape(client: httpx.AsyncClient, path: str = "/metrics") -> Samples:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def request_key(route: str, operation: str, status: int, code: str) -> tuple[str, Labels]:
    return (
        "school_gateway_requests_total",
        labels(route=route, operation=operation, status=str(status), code=code),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def http(live: LiveServer) -> Any:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        yield client


async def test_requests_are_counted_by_operation_status_and_code(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    before = await scrape(http)
    parent = bearer(tokens["parent-one-school"])
    for _ in range(7):
        answer = await http.post("/graphql", json={"query": PROBE}, headers=parent)
        assert answer.json()["data"] == {"viewer": {"role": "PARENT"}}
    for _ in range(2):  # an execution error: HTTP 200 with FORBIDDEN
        answer = await http.post("/graphql", json={"query": FORBIDDEN}, headers=parent)
        assert answer.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", answer.text
    for _ in range(3):  # refused before the operation is known
        answer = await http.post("/graphql", json={"query": PROBE}, headers=bearer("nonsense"))
        assert answer.status_code == 401
    strict = {"Accept": "application/graphql-response+json"}
    invalid = await http.post(
        "/graphql", json={"query": "query MetricsBad { nope }"}, headers=strict
    )
    assert invalid.status_code == 400
    assert (await http.put("/graphql", json={"query": PROBE})).status_code == 405
    after = await scrape(http)

    def grew(key: tuple[str, Labels]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew(request_key("/graphql", "MetricsProbe", 200, "")) == 7
    assert grew(request_key("/graphql", "MetricsForbidden", 200, "FORBIDDEN")) == 2
    assert grew(request_key("/graphql", "", 401, "UNAUTHENTICATED")) == 3
    assert grew(request_key("/graphql", "MetricsBad", 400, "GRAPHQL_VALIDATION_FAILED")) == 1
    assert grew(request_key("/graphql", "", 405, "METHOD_NOT_ALLOWED")) == 1
    probe = labels(route="/graphql", operation="MetricsProbe")
    assert grew(("school_gateway_request_duration_seconds_count", probe)) == 7
    assert grew(("school_gateway_request_duration_seconds_sum", probe)) > 0
    # Every /graphql request above observed its statements; authenticated ones sent some.
    statements = labels(route="/graphql")
    assert grew(("school_gateway_request_sql_statements_count", statements)) == 14
    assert grew(("school_gateway_request_sql_statements_sum", statements)) >= 9
    # The scrape before is itself counted (route /metrics, no statements).
    assert grew(request_key("/metrics", "", 200, "")) == 1


async def test_response_cache_and_loader_batches(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    parent = bearer(tokens["parent-two-schools"])
    body = {"query": WEEK_QUERY, "variables": WEEK}
    before = await scrape(http)
    first = await http.post("/graphql", json=body, headers=parent)
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    middle = await scrape(http)
    second = await http.post("/graphql", json=body, headers=parent)
    assert second.content == first.content  # the cached answer
    after = await scrape(http)

    def lookups(samples: Samples, result: str) -> float:
        return total(samples, "school_gateway_response_cache_lookups_total", result=result)

    assert (lookups(middle, "miss") - lookups(before, "miss"), lookups(middle, "hit")) == (
        1,
        lookups(before, "hit"),
    )
    assert lookups(after, "hit") - lookups(middle, "hit") == 1
    assert lookups(after, "miss") == lookups(middle, "miss")
    assert total(after, "school_gateway_response_cache_entries") >= 1
    batches = "school_gateway_loader_batch_size_count"
    assert total(middle, batches) > total(before, batches)  # the diary read in batches
    assert total(after, batches) == total(middle, batches)  # the hit read nothing
    keys_read = total(middle, "school_gateway_loader_batch_size_sum") - total(
        before, "school_gateway_loader_batch_size_sum"
    )
    assert keys_read >= 2  # two children's rows, at least


async def test_a_failed_password_sign_in_is_counted_by_outcome(
    http: httpx.AsyncClient, planted: PlantedStudent
) -> None:
    outcome = labels(method="PASSWORD", outcome="INVALID_CREDENTIALS")
    before = await scrape(http)
    wrong = await http.post("/auth/login", json={"login": planted.login, "password": "wrong"})
    assert wrong.json()["errors"][0]["extensions"]["code"] == "INVALID_CREDENTIALS"
    after = await scrape(http)
    grew = after.get(("school_gateway_sign_ins_total", outcome), 0) - before.get(
        ("school_gateway_sign_ins_total", outcome), 0
    )
    assert grew == 1
    login = total(after, "school_gateway_requests_total", route="/auth/login") - total(
        before, "school_gateway_requests_total", route="/auth/login"
    )
    assert login == 1
    refused = total(
        after, "school_gateway_requests_total", route="/auth/login", code="INVALID_CREDENTIALS"
    ) - total(
        before, "school_gateway_requests_total", route="/auth/login", code="INVALID_CREDENTIALS"
    )
    assert refused == 1  # the sign-in's own code on the request too
    text = "\n".join(f"{name} {dict(ls)}" for name, ls in after)
    assert planted.login not in text  # no login, SNILS or phone in any label


async def test_audit_queue_and_pool_states(
    http: httpx.AsyncClient, live: LiveServer, pool: asyncpg.Pool, tokens: dict[str, str]
) -> None:
    samples = await scrape(http)
    assert ("school_gateway_audit_queue_depth", labels()) in samples
    assert ("school_gateway_audit_dropped_total", labels()) in samples
    primary = {"pool": "primary"}
    assert total(samples, "school_gateway_db_pool_max_connections", **primary) == (
        pool.get_max_size()
    )
    assert total(samples, "school_gateway_db_pool_waiting", **primary) == 0
    # Every connection taken: a statement waits, and the metrics say so.
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
    try:
        await asyncio.sleep(0.05)
        busy = await scrape(http)
        assert total(busy, "school_gateway_db_pool_waiting", **primary) >= 1
        in_use = total(busy, "school_gateway_db_pool_connections", state="in_use", **primary)
        assert in_use == pool.get_max_size()
        assert total(busy, "school_gateway_db_pool_connections", state="idle", **primary) == 0
    finally:
        for conn in held:
            await pool.release(conn)
    assert await waiter == 1
    calm = await scrape(http)
    assert total(calm, "school_gateway_db_pool_waiting", **primary) == 0
    # A read of a child's data is audited: the written total follows the recorder's.
    parent = bearer(tokens["parent-one-school"])
    children = await http.post("/graphql", json={"query": "{ myChildren { id } }"}, headers=parent)
    assert children.json()["data"]["myChildren"]
    await live.app.state.auth.recorder.flush()
    audited = await scrape(http)
    written = "school_gateway_audit_written_total"
    assert total(audited, written) >= total(calm, written) + 1
    assert total(audited, "school_gateway_audit_queue_depth") == 0


async def test_analytics_refresh_age_and_duration(
    http: httpx.AsyncClient, live: LiveServer, tokens: dict[str, str]
) -> None:
    answer = await http.post(
        "/graphql", json={"query": ANALYTICS}, headers=bearer(tokens["regional-analyst"])
    )
    refreshed_at = answer.json()["data"]["regionalAnalytics"]["freshness"]["refreshedAt"]
    seen = await scrape(http)
    stamp = seen[("school_gateway_analytics_refreshed_timestamp_seconds", labels())]
    assert stamp >= datetime.fromisoformat(refreshed_at).timestamp() - 0.001
    age = seen[("school_gateway_analytics_refresh_age_seconds", labels())]
    analytics_pool = total(seen, "school_gateway_db_pool_max_connections", pool="analytics")
    assert analytics_pool == live.settings.analytics.pool_max_size  # its own pool, opened
    assert 0 <= age <= time.time() - stamp + 1
    count = "school_gateway_analytics_refresh_duration_seconds_count"
    freshness = await live.app.state.services.analytics.refresh()
    after = await scrape(http)
    assert after[(count, labels())] - seen.get((count, labels()), 0) == 1
    duration = after[("school_gateway_analytics_refresh_duration_seconds_sum", labels())]
    assert duration - seen.get(
        ("school_gateway_analytics_refresh_duration_seconds_sum", labels()), 0
    ) == pytest.approx(freshness.duration_ms / 1000)
    assert after[("school_gateway_analytics_refreshed_timestamp_seconds", labels())] == (
        pytest.approx(freshness.refreshed_at.timestamp())
    )


async def test_operation_labels_stay_bounded(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, seeded: SeedSummary
) -> None:
    """300 distinct client-chosen names: each request counted, the names seen as labels
    capped at the first MAX_OPERATION_NAMES (beyond: `other`), plus registered names."""
    async with (
        live_server(gateway_env(database_url, data_dir), pool) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        before = await scrape(client)
        long_name = "L" * 65  # over MAX_LABEL_CHARS: `other` while there is room
        names = ["Op" + "".join(secrets.choice(LETTERS) for _ in range(16)) for _ in range(300)]
        for name in [long_name, *names]:
            answer = await client.post("/graphql", json={"query": f"query {name} {{ __typename }}"})
            assert answer.json() == {"data": {"__typename": "Query"}}
        after = await scrape(client)
    counted: dict[str, float] = {}  # this application's own requests by operation label
    for (n, ls), value in after.items():
        if n == "school_gateway_requests_total" and dict(ls)["route"] == "/graphql":
            operation = dict(ls)["operation"]
            counted[operation] = counted.get(operation, 0) + value - before.get((n, ls), 0)
    sent = [name for name in names if counted.get(name)]
    assert len(sent) == MAX_OPERATION_NAMES  # this application's first 100
    assert sent == names[:MAX_OPERATION_NAMES]
    assert counted["other"] == 300 - MAX_OPERATION_NAMES + 1  # and the long name
    assert sum(counted.values()) == 301
    grown = {operation for operation, count in counted.items() if count}
    assert grown == {*names[:MAX_OPERATION_NAMES], "other"}
    assert long_name not in counted


async def test_metrics_off_or_on_another_path(settings: Settings, pool: asyncpg.Pool) -> None:
    """Off: no exposition and nothing counted; moved: served at the new path only."""
    off = dataclasses.replace(settings, metrics=MetricsSettings(enabled=False))
    moved = dataclasses.replace(settings, metrics=MetricsSettings(path="/internal/metrics"))
    apps = {"off": create_app(off, pool=pool), "moved": create_app(moved, pool=pool)}
    clients = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h")
        for name, app in apps.items()
    }
    unseen = {"query": "query MetricsUnseen { __typename }"}
    try:
        assert (await clients["off"].get("/metrics")).status_code == 404
        assert (await clients["moved"].get("/metrics")).status_code == 404
        before = await scrape(clients["moved"], "/internal/metrics")
        assert (await clients["off"].post("/graphql", json=unseen)).status_code == 200
        after = await scrape(clients["moved"], "/internal/metrics")
        key = request_key("/graphql", "MetricsUnseen", 200, "")
        assert after.get(key, 0) == before.get(key, 0) == 0  # the app with metrics off
        assert after[request_key("unmatched", "", 404, "")] >= 1  # moved's own /metrics 404
        grew = total(after, "school_gateway_requests_total", route="/internal/metrics") - total(
            before, "school_gateway_requests_total", route="/internal/metrics"
        )
        assert grew == 1
    finally:
        for name, app in apps.items():
            await clients[name].aclose()
            await app.state.auth.recorder.close()
            await app.state.services.close()


def _get_metrics(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return parse(response.text)


def _wait_for(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.2)


def test_a_separate_metrics_port(database_url: str, tmp_path: Path, seeded: SeedSummary) -> None:
    port, metrics_port = free_port(), free_port()
    env = command_env(database_url, tmp_path, SCHOOL_GATEWAY_METRICS_PORT=str(metrics_port))
    with serving(env, port):
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
        for _ in range(5):
            answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": ANONYMOUS})
            assert answer.status_code == 200
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        samples = _get_metrics(url)
        assert samples[request_key("/graphql", "MetricsAnonymous", 200, "")] == 5
        assert samples[request_key("unmatched", "", 404, "")] == 1  # the main port's refusal
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/other").status_code == 404
        # The pool's state is sampled every second by the application.
        _wait_for(
            lambda: (
                total(_get_metrics(url), "school_gateway_db_pool_connections", pool="primary") >= 1
            )
        )


def test_the_separate_port_keeps_to_its_own_address(
    database_url: str, tmp_path: Path, seeded: SeedSummary
) -> None:
    """The application public (0.0.0.0), its metrics port on 127.0.0.1 only (the default
    SCHOOL_GATEWAY_METRICS_HOST): another address of the machine is refused; an IPv6
    address is served too."""
    port, metrics_port, v6_port = free_port(), free_port(), free_port()
    public = command_env(
        database_url,
        tmp_path,
        SCHOOL_GATEWAY_HOST="0.0.0.0",
        SCHOOL_GATEWAY_METRICS_PORT=str(metrics_port),
    )
    with serving(public, port):
        assert httpx.get(f"http://127.0.0.2:{port}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{metrics_port}/metrics")
    v6 = command_env(
        database_url,
        tmp_path,
        SCHOOL_GATEWAY_METRICS_PORT=str(v6_port),
        SCHOOL_GATEWAY_METRICS_HOST="::1",
    )
    with serving(v6, free_port()):
        assert httpx.get(f"http://[::1]:{v6_port}/metrics").status_code == 200


def test_two_workers_add_up(database_url: str, tmp_path: Path, seeded: SeedSummary) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale")  # an earlier run's: removed
    port = free_port()
    env = command_env(database_url, tmp_path, SCHOOL_GATEWAY_METRICS_DIR=str(folder))
    # Several workers label only registered documents' names: any other is `other`.
    key = request_key("/graphql", "other", 200, "")
    registered = request_key("/graphql", "PageViewer", 200, "")
    with serving(env, port, "serve", "--workers", "2"):
        assert not (folder / "counter_999999.db").exists()
        page = httpx.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": "query PageViewer { __typename }"}
        )
        assert page.json() == {"data": {"__typename": "Query"}}

        def probe(_: int) -> int:
            # A connection each, several at once: the two workers both accept some.
            answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": ANONYMOUS})
            return answer.status_code

        assert probe(0) == 200
        _wait_for(lambda: sum(_per_process(folder, key).values()) == 1)
        sent, deadline = 1, time.monotonic() + 30
        while True:  # until each worker has served some (the kernel picks who accepts)
            with ThreadPoolExecutor(8) as threads:
                assert set(threads.map(probe, range(20))) == {200}
            sent += 20
            per_worker = _per_process(folder, key)  # each worker's own file
            if len([count for count in per_worker.values() if count]) == 2:
                break
            assert time.monotonic() < deadline, per_worker
        assert sum(per_worker.values()) == sent
        for _ in range(6):  # whichever worker answers the scrape, the same sum
            samples = _get_metrics(f"http://127.0.0.1:{port}/metrics")
            assert samples[key] == sent
            assert samples[registered] == 1
            assert (
                total(samples, "school_gateway_requests_total", operation="MetricsAnonymous") == 0
            )
        _wait_for(  # each worker's pool (at least one connection each) adds up
            lambda: (
                total(
                    _get_metrics(f"http://127.0.0.1:{port}/metrics"),
                    "school_gateway_db_pool_connections",
                    pool="primary",
                )
                >= 2
            )
        )


def test_a_dead_workers_gauges_are_dropped(
    database_url: str, tmp_path: Path, seeded: SeedSummary
) -> None:
    """A worker killed (and replaced by the supervisor) no longer counts in the gauges
    that add up live workers: its pool's connections are gone from the sum."""
    folder = tmp_path / "prometheus"
    port = free_port()
    env = command_env(database_url, tmp_path, SCHOOL_GATEWAY_METRICS_DIR=str(folder))
    url = f"http://127.0.0.1:{port}/metrics"
    with serving(env, port, "serve", "--workers", "2") as process:
        _wait_for(lambda: len(_live_gauge_pids(folder) - {process.pid}) == 2)
        workers = _live_gauge_pids(folder) - {process.pid}
        _wait_for(lambda: total(_get_metrics(url), "school_gateway_db_pool_connections") >= 2)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: len(_live_gauge_pids(folder) - {process.pid, victim}) == 2, 30)

        def pools(samples: Samples) -> tuple[float, float]:
            return (
                total(samples, "school_gateway_db_pool_connections", pool="primary"),
                total(samples, "school_gateway_db_pool_max_connections", pool="primary"),
            )

        # The replacement has opened its pool and sampled it once.
        _wait_for(lambda: pools(_get_metrics(url))[0] >= 2, 30)
        connections, maximum = pools(_get_metrics(url))
        assert victim not in _live_gauge_pids(folder)  # dropped by a scrape
        assert 2 <= connections <= maximum
        assert maximum == 2 * 10  # two live workers' SCHOOL_GATEWAY_POOL_MAX, not three


def test_serve_refuses_prometheus_multiproc_dir_for_itself(
    database_url: str, tmp_path: Path, seeded: SeedSummary
) -> None:
    env = command_env(database_url, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    done = run_command(["serve", "--port", str(free_port()), "--workers", "2"], env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "SCHOOL_GATEWAY_METRICS_DIR" in done.stderr


def _live_gauge_pids(folder: Path) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("gauge_live*_*.db")}


def _per_process(folder: Path, key: tuple[str, Labels]) -> Mapping[str, float]:
    """The counter's value in each worker's own file of the multiprocess folder."""
    from prometheus_client.multiprocess import MultiProcessCollector

    counts: dict[str, float] = {}
    for path in folder.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):  # type: ignore[no-untyped-call]
            for sample in metric.samples:
                if (sample.name, frozenset(sample.labels.items())) == key:
                    counts[path.stem] = counts.get(path.stem, 0.0) + sample.value
    return counts
