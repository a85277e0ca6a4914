"""Slow and vanishing clients, through a real uvicorn server (issue 9, items 7 and 9).

- Request headers not complete within SCHOOL_GATEWAY_HEADER_TIMEOUT (1 s here): the
  connection is closed — a byte a second, or nothing at all after connecting, or the
  next request on a keep-alive connection. Both of uvicorn's parsers (httptools, h11).
- A body not complete within SCHOOL_GATEWAY_BODY_TIMEOUT (1 s here): 408
  REQUEST_TIMEOUT and the connection closed.
- A client that sends half a body and disconnects: one INFO line, no ERROR, no
  traceback, and the request line says 499 (nothing is sent), not 500.

Before these, uvicorn kept such connections open for as long as the client liked, and a
disconnect was logged as an ERROR traceback with status 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from tests.support.environment import gateway_env
from tests.support.live_server import LiveServer, live_server

TIMEOUT_S = 1
# How long a test waits for the server to act before calling it stuck: far above the
# 1 s timeouts, far below what a trickling client would take to finish.
GIVE_UP_S = 6.0
TRICKLE_INTERVAL_S = 0.2
SLOW_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Padding: " + b"a" * 60 + b"\r\n\r\n"


@pytest.fixture(scope="module", params=["fast", "asyncio"])
async def server(
    request: pytest.FixtureRequest, database_url: str, data_dir: Path, pool: asyncpg.Pool
) -> AsyncIterator[LiveServer]:
    """A live server with 1 s header and body timeouts, on httptools or h11."""
    env = {
        **gateway_env(database_url, data_dir),
        "SCHOOL_GATEWAY_HEADER_TIMEOUT": str(TIMEOUT_S),
        "SCHOOL_GATEWAY_BODY_TIMEOUT": str(TIMEOUT_S),
        "SCHOOL_GATEWAY_SERVER": request.param,
    }
    async with live_server(env, pool) as running:
        yield running


async def _connect(server: LiveServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = urlsplit(server.url)
    assert address.hostname is not None and address.port is not None
    return await asyncio.open_connection(address.hostname, address.port)


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send `data` a byte at a time, until it is all sent or the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(TRICKLE_INTERVAL_S)


async def _read_until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """What the server sends until it closes, and how long that took (seconds).

    A server that closes while the client is still sending makes the client's kernel see
    a reset, which can discard an answer already received: what was read before stays.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks: list[bytes] = []
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(GIVE_UP_S):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    return b"".join(chunks), loop.time() - started


async def _closed_while_trickling(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[bytes, float]:
    trickling = asyncio.create_task(_trickle(writer, data))
    try:
        return await _read_until_closed(reader)
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
        writer.close()


async def test_headers_sent_a_byte_at_a_time_are_cut_off(server: LiveServer) -> None:
    reader, writer = await _connect(server)
    received, elapsed = await _closed_while_trickling(reader, writer, SLOW_HEADERS)
    print(f"slow headers: closed after {elapsed:.2f} s (timeout {TIMEOUT_S} s)")
    assert received == b""  # closed, never answered
    full_trickle_s = len(SLOW_HEADERS) * TRICKLE_INTERVAL_S
    assert TIMEOUT_S * 0.9 <= elapsed < min(TIMEOUT_S + 3, full_trickle_s)


async def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    reader, writer = await _connect(server)
    try:
        received, elapsed = await _read_until_closed(reader)
    finally:
        writer.close()
    print(f"silent connection: closed after {elapsed:.2f} s (timeout {TIMEOUT_S} s)")
    assert received == b"" and TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 3


async def test_the_next_request_on_a_keep_alive_connection_has_the_same_limit(
    server: LiveServer,
) -> None:
    reader, writer = await _connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    received, elapsed = await _closed_while_trickling(reader, writer, SLOW_HEADERS)
    print(f"second request's slow headers: closed after {elapsed:.2f} s")
    assert received == b"" and elapsed < TIMEOUT_S + 3


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/graphql", "application/json", b'{"query": "{ viewer { role } }", "x": "' + b"a" * 80),
        ("/auth/login", "application/json", b'{"login": "smirnov.petr", "x": "' + b"a" * 80),
        ("/auth/token", "application/x-www-form-urlencoded", b"grant_type=" + b"a" * 80),
    ],
)
async def test_a_body_sent_a_byte_at_a_time_is_answered_408(
    server: LiveServer,
    path: str,
    content_type: str,
    body: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    reader, writer = await _connect(server)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    await writer.drain()
    received, elapsed = await _closed_while_trickling(reader, writer, body)
    line = await _request_line(caplog, f"POST {path} ")
    print(f"slow body to {path}: closed after {elapsed:.2f} s, {len(received)} bytes; {line}")
    assert line.startswith(f"POST {path} 408 ")
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 3
    if received:  # (unless the close reset the connection before the client read it)
        head, _, payload = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), received
        assert b"connection: close" in head.lower()
        assert orjson.loads(payload)["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/graphql", "application/json"), ("/auth/login", "application/json")],
)
async def test_a_client_that_leaves_mid_body_is_not_an_error(
    server: LiveServer, path: str, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, writer = await _connect(server)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
        "Accept: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"query": "{ viewer'
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    line = await _request_line(caplog, f"POST {path} ")
    print(f"request line: {line}")
    assert line.startswith(f"POST {path} 499 ")
    assert [r.getMessage() for r in caplog.records if "client disconnected" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


async def _request_line(caplog: pytest.LogCaptureFixture, prefix: str) -> str:
    async with asyncio.timeout(GIVE_UP_S):
        while True:
            for record in caplog.records:
                if record.name == "gateway.access" and record.getMessage().startswith(prefix):
                    return record.getMessage()
            await asyncio.sleep(0.05)
