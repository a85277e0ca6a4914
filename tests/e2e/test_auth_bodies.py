"""Bodies (sign-in, tokens, /graphql) are read as bounded streams: a 100 MiB chunked
upload is refused after reading at most its limit, with memory and CPU to match (issue 9, item 4).

Each request streams 100 MiB from a generator (no Content-Length: chunked framing) into
the real application over httpx's ASGI transport, which hands the application one chunk
per `receive()`; the generator counts what it yielded, i.e. what the server consumed
before answering. Before the fix `/auth/login` (JSON), `/auth/token` and `/auth/logout`
read the whole body first (100 MiB consumed, ~109 MiB allocated per request).

The last test does the same against a real uvicorn server: there the client pushes the
whole 100 MiB (the server reads and discards what follows the refusal), and the
process's memory peak (server and client) stays under a few MiB.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from gateway.core.bodies import AUTH_BODY_LIMIT
from gateway.http.protocol import MAX_BODY_BYTES as GRAPHQL_BODY_LIMIT
from tests.support.environment import gateway_env
from tests.support.live_server import live_server

ORIGIN = "http://127.0.0.1:8000"
CHUNK = 1024
TOTAL = 100 * 1024 * 1024
MAX_PEAK_BYTES = 4 * 1024 * 1024
MAX_CPU_SECONDS = 0.5


@dataclass
class Upload:
    """A 100 MiB body from one reused chunk; `sent` counts the bytes handed over."""

    sent: int = 0
    chunk_size: int = CHUNK

    async def body(self) -> AsyncGenerator[bytes, None]:
        chunk = b"x" * self.chunk_size
        while self.sent < TOTAL:
            self.sent += len(chunk)
            yield chunk


@dataclass(frozen=True)
class Case:
    path: str
    content_type: str
    status: int
    limit: int = AUTH_BODY_LIMIT
    extra_headers: tuple[tuple[str, str], ...] = ()


CASES = {
    "login json": Case("/auth/login", "application/json", 413),
    "login form": Case("/auth/login", "application/x-www-form-urlencoded", 413),
    "login multipart": Case("/auth/login", "multipart/form-data; boundary=xyz", 413),
    "token form": Case("/auth/token", "application/x-www-form-urlencoded", 413),
    "token json": Case("/auth/token", "application/json", 413),
    "logout bearer": Case(
        "/auth/logout",
        "application/x-www-form-urlencoded",
        413,
        extra_headers=(("Authorization", "Bearer whatever"),),
    ),
    "logout json": Case("/auth/logout", "application/json", 413),
    "oauth token": Case("/oauth/token", "application/x-www-form-urlencoded", 413),
    "graphql": Case("/graphql", "application/json", 413, GRAPHQL_BODY_LIMIT),
    "dev idp token": Case(
        "/dev-idp/aas/oauth2/v3/te", "application/x-www-form-urlencoded", 413, 16384
    ),
}


@pytest.fixture
async def raw_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.200", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN, timeout=60) as client:
        yield client


@pytest.mark.parametrize("name", list(CASES))
async def test_chunked_100_mib_body_is_refused_after_the_limit(
    raw_client: httpx.AsyncClient, name: str
) -> None:
    case = CASES[name]
    upload = Upload()
    headers = {"Content-Type": case.content_type, "Origin": ORIGIN, **dict(case.extra_headers)}
    tracemalloc.start()
    cpu = time.process_time()
    try:
        response = await raw_client.post(case.path, content=upload.body(), headers=headers)
        cpu = time.process_time() - cpu
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(
        f"{name}: status {response.status_code}, consumed {upload.sent} B of {TOTAL} B, "
        f"peak {peak / 1024:.0f} KiB, CPU {cpu * 1000:.1f} ms"
    )
    assert "content-length" not in response.request.headers  # chunked, no declared size
    assert response.status_code == case.status, response.text
    assert "PAYLOAD_TOO_LARGE" in response.text
    assert upload.sent <= case.limit + CHUNK  # stopped at the first chunk over the limit
    assert peak < MAX_PEAK_BYTES
    assert cpu < MAX_CPU_SECONDS


async def test_declared_length_over_the_limit_is_refused_unread(
    raw_client: httpx.AsyncClient,
) -> None:
    """A Content-Length over the limit is refused before the first chunk is read."""
    for path in ("/auth/login", "/auth/token", "/auth/logout", "/oauth/token"):
        upload = Upload()
        response = await raw_client.post(
            path,
            content=upload.body(),
            headers={
                "Content-Type": "application/json"
                if path != "/oauth/token"
                else "application/x-www-form-urlencoded",
                "Content-Length": str(TOTAL),
            },
        )
        assert response.status_code == 413, (path, response.text)
        assert upload.sent <= CHUNK, path


async def test_bodies_within_the_limit_still_work(raw_client: httpx.AsyncClient) -> None:
    """Just under the limit is read and parsed (here: a malformed refresh request)."""
    padding = "p" * (AUTH_BODY_LIMIT - 200)
    response = await raw_client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": "nope", "padding": padding},
    )
    assert response.status_code == 400 and response.json()["code"] == "REFRESH_TOKEN_INVALID"


async def test_chunked_upload_to_a_real_server_keeps_memory_flat(
    database_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    async with live_server(gateway_env(database_url, data_dir), pool) as live:
        for path in ("/auth/login", "/auth/logout"):
            upload = Upload(chunk_size=64 * 1024)
            tracemalloc.start()
            try:
                async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
                    response = await client.post(
                        path, content=upload.body(), headers={"Content-Type": "application/json"}
                    )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            print(f"live {path}: {response.status_code}, peak {peak / 1024:.0f} KiB")
            assert response.status_code == 413 and "PAYLOAD_TOO_LARGE" in response.text
            assert peak < MAX_PEAK_BYTES


async def test_200_chunked_uploads_leave_memory_unchanged(raw_client: httpx.AsyncClient) -> None:
    """Issue 9's figure: 200 refused 100 MiB uploads, spread over every endpoint that takes
    a body, keep no memory (traced allocations within 10 MiB of before, after a collection)."""
    names = [name for name in CASES if name != "dev idp token"]
    tracemalloc.start()
    try:
        await _upload(raw_client, CASES[names[0]])  # warm-up: caches, lazily built objects
        await _collect()
        before, _ = tracemalloc.get_traced_memory()
        for index in range(200):
            response = await _upload(raw_client, CASES[names[index % len(names)]])
            assert response.status_code == 413, response.text
        await _collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    mib = 2**20
    print(f"200 uploads: traced {before / mib:.2f} → {after / mib:.2f} MiB, peak {peak / mib:.2f}")
    assert after - before < 10 * 2**20


async def _upload(client: httpx.AsyncClient, case: Case) -> httpx.Response:
    upload = Upload(chunk_size=64 * 1024)
    headers = {"Content-Type": case.content_type, "Origin": ORIGIN, **dict(case.extra_headers)}
    body = upload.body()
    try:
        return await client.post(case.path, content=body, headers=headers)
    finally:
        # The client's generator is left mid-iteration by the refusal, and the test
        # runner's loop keeps a reference to it (with its chunk) until closed.
        await body.aclose()


async def _collect() -> None:
    """Collect garbage, then let the loop close the abandoned async generators (the
    client's body generator and the server's `request.stream()` are left mid-iteration
    on a refusal; the loop's finaliser closes them on its next turns)."""
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0)
