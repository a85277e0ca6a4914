"""gzip over the real app (gateway.http.compression, SCHOOL_GATEWAY_COMPRESSION_MIN_BYTES):
large answers compressed for clients that accept it, byte for byte the same once
decompressed, `Vary: Accept-Encoding`, the right `Content-Length`; small bodies, HEAD,
refusing clients and a threshold of 0 left alone; cache hits and errors compressed too."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.core.settings import Settings
from gateway.http.compression import CompressedBodies, CompressionMiddleware, accepts_gzip
from tests.support.environment import TODAY
from tests.support.statements import FAMILY_QUERY

MONDAY = TODAY - timedelta(days=TODAY.weekday())
WEEK = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=6)).isoformat()}
FAMILY = {"query": FAMILY_QUERY, "variables": WEEK}
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


@dataclasses.dataclass(frozen=True)
class Raw:
    """A response as sent: status, headers and the body bytes before any decoding."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def encoding(self) -> str | None:
        value: str | None = self.headers.get("content-encoding")
        return value

    def vary(self) -> set[str]:
        return {token.strip().lower() for token in self.headers.get("vary", "").split(",")}

    def decoded(self) -> bytes:
        return gzip.decompress(self.body) if self.encoding == "gzip" else self.body


async def _raw(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], **kwargs: Any
) -> Raw:
    async with client.stream(method, url, headers=headers, **kwargs) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return Raw(response.status_code, response.headers, body)


def _client(app: Starlette, settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=settings.auth.public_url)


@pytest.fixture(scope="module")
async def app_with(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[dict[int, Starlette]]:
    """Apps of the real gateway by compression threshold (0: off, 64: tiny bodies too)."""
    apps = {
        threshold: create_app(
            dataclasses.replace(settings, compression_min_bytes=threshold), pool=pool
        )
        for threshold in (0, 64)
    }
    yield apps
    for app in apps.values():
        await app.state.auth.recorder.close()
        await app.state.services.close()


def _bearer(tokens: dict[str, str], key: str = "parent-two-schools") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[key]}", "Accept": "application/json"}


def test_accept_encoding() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("gzip, deflate, br, zstd")
    assert accepts_gzip("br;q=1.0, gzip;q=0.5")
    assert accepts_gzip("*")
    assert accepts_gzip("x-gzip")
    assert not accepts_gzip(None)
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("br, deflate")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("gzip;q=0.0, *")
    assert not accepts_gzip("*;q=0")


async def test_a_large_answer_is_gzipped_and_decompresses_to_the_same_bytes(
    client: httpx.AsyncClient, settings: Settings, tokens: dict[str, str]
) -> None:
    assert settings.compression_min_bytes == 1024  # the default
    headers = _bearer(tokens)
    plain = await _raw(client, "POST", "/graphql", {**headers, **IDENTITY}, json=FAMILY)
    packed = await _raw(client, "POST", "/graphql", {**headers, **GZIP}, json=FAMILY)
    assert plain.status == packed.status == 200
    assert plain.encoding is None
    assert len(plain.body) > 10_000 and orjson.loads(plain.body)["data"]["myChildren"]
    assert packed.encoding == "gzip"
    assert packed.decoded() == plain.body
    assert len(packed.body) * 4 < len(plain.body)
    for raw in (plain, packed):  # the answer depends on Accept-Encoding either way
        assert "accept-encoding" in raw.vary()
        assert int(raw.headers["content-length"]) == len(raw.body)
    # The second request was a response-cache hit (same viewer, query and versions):
    # compressed just the same.
    again = await _raw(client, "POST", "/graphql", {**headers, **GZIP}, json=FAMILY)
    assert again.encoding == "gzip" and again.body == packed.body


async def test_what_is_left_uncompressed(
    client: httpx.AsyncClient,
    app_with: dict[int, Starlette],
    settings: Settings,
    tokens: dict[str, str],
) -> None:
    headers = _bearer(tokens)
    big = await _raw(client, "POST", "/graphql", {**headers, **GZIP}, json=FAMILY)
    assert big.encoding == "gzip"  # the control: this one is compressed
    small = await _raw(
        client, "POST", "/graphql", {**headers, **GZIP}, json={"query": "{ __typename }"}
    )
    refused = await _raw(
        client, "POST", "/graphql", {**headers, "Accept-Encoding": "gzip;q=0, br"}, json=FAMILY
    )
    async with _client(app_with[0], settings) as off:
        disabled = await _raw(off, "POST", "/graphql", {**headers, **GZIP}, json=FAMILY)
    for raw in (small, refused, disabled):
        assert raw.status == 200
        assert raw.encoding is None
        assert orjson.loads(raw.body)["data"]
        assert int(raw.headers["content-length"]) == len(raw.body)
    assert refused.body == disabled.body == big.decoded()
    assert "accept-encoding" in refused.vary()  # over the threshold: the answer varies
    assert "accept-encoding" not in small.vary() | disabled.vary()


async def test_errors_are_compressed_too(
    app_with: dict[int, Starlette], settings: Settings
) -> None:
    async with _client(app_with[64], settings) as tiny:
        raw = await _raw(
            tiny,
            "POST",
            "/graphql",
            {"Authorization": "Bearer nope", "Accept": "application/json", **GZIP},
            json={"query": "{ viewer { id } }"},
        )
    assert raw.status == 401 and raw.encoding == "gzip"
    body = orjson.loads(raw.decoded())
    assert [error["extensions"]["code"] for error in body["errors"]] == ["UNAUTHENTICATED"]
    assert int(raw.headers["content-length"]) == len(raw.body)


def _chunks() -> Iterator[bytes]:
    for number in range(200):
        yield b'{"line": %d, "text": "a streamed body"}\n' % number


async def _streamed(request: Request) -> Response:
    return StreamingResponse(_chunks(), media_type="application/x-ndjson+json")


async def _big(request: Request) -> Response:
    return Response(b"[" + b"1, " * 2000 + b"1]", media_type="application/json")


async def _encoded(request: Request) -> Response:
    body = gzip.compress(b"x" * 5000)
    headers = {"Content-Encoding": "gzip"}
    return Response(body, media_type="application/json", headers=headers)


async def test_streamed_encoded_and_head() -> None:
    """The middleware on its own (the gateway streams nothing yet): a streamed body is
    compressed chunk by chunk without Content-Length; an encoded one is left alone; HEAD
    is never compressed (its GET is)."""
    routes = [Route("/stream", _streamed), Route("/encoded", _encoded), Route("/big", _big)]
    app = CompressionMiddleware(Starlette(routes=routes), min_bytes=1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        stream = await _raw(client, "GET", "/stream", GZIP)
        encoded = await _raw(client, "GET", "/encoded", GZIP)
        get = await _raw(client, "GET", "/big", GZIP)
        head = await _raw(client, "HEAD", "/big", GZIP)
    assert stream.encoding == "gzip" and "content-length" not in stream.headers
    assert stream.decoded() == b"".join(_chunks())
    assert "accept-encoding" in stream.vary()
    assert encoded.encoding == "gzip"
    assert gzip.decompress(encoded.body) == b"x" * 5000  # compressed once, not twice
    assert get.encoding == "gzip" and int(get.headers["content-length"]) == len(get.body)
    assert head.encoding is None and head.body == b""
    assert int(head.headers["content-length"]) == len(gzip.decompress(get.body))


async def test_a_body_sent_again_is_not_compressed_again() -> None:
    """The gzip of a body is kept under its digest: the same content (a cache hit, a
    repeated answer) gets the same compressed bytes without compressing again."""
    bodies = CompressedBodies()
    body = b'{"data": [' + b'"a line of the diary", ' * 500 + b'"end"]}'
    first = await bodies.gzip(body)
    assert gzip.decompress(first) == body
    assert await bodies.gzip(bytes(bytearray(body))) is first
    assert await bodies.gzip(body + b" ") is not first


async def test_static_files_are_gzipped_with_a_weak_etag(client: httpx.AsyncClient) -> None:
    """The pages' scripts and styles are compressed; their strong ETag becomes weak (the
    gzip is other bytes), and revalidating with it still gets 304."""
    plain = await _raw(client, "GET", "/static/css/site.css", IDENTITY)
    packed = await _raw(client, "GET", "/static/css/site.css", GZIP)
    assert plain.status == packed.status == 200 and len(plain.body) > 1024
    assert packed.encoding == "gzip" and packed.decoded() == plain.body
    assert not plain.headers["etag"].startswith("W/")
    assert packed.headers["etag"] == "W/" + plain.headers["etag"]
    again = await _raw(
        client, "GET", "/static/css/site.css", {**GZIP, "If-None-Match": packed.headers["etag"]}
    )
    assert again.status == 304 and again.body == b"" and again.encoding is None


async def test_a_static_304_carries_what_its_200_would(client: httpx.AsyncClient) -> None:
    """RFC 9110 15.4.5: the 304 sends the ETag and Vary the 200 would (the review found the
    strong tag on a 304 to a gzip-accepting client whose 200 had the weak one)."""
    url = "/static/css/site.css"
    packed = await _raw(client, "GET", url, GZIP)
    plain = await _raw(client, "GET", url, IDENTITY)
    for headers, full in ((GZIP, packed), (IDENTITY, plain)):
        for tag in (plain.headers["etag"], packed.headers["etag"], "*"):
            again = await _raw(client, "GET", url, {**headers, "If-None-Match": tag})
            assert (again.status, again.body) == (304, b"")
            assert again.headers["etag"] == full.headers["etag"]
            assert "accept-encoding" in again.vary() and "accept-encoding" in full.vary()
