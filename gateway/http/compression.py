"""gzip for responses of SCHOOL_GATEWAY_COMPRESSION_MIN_BYTES or more (default 1024; 0: off).

A response is compressed when all of these hold:
- the client accepts gzip (`Accept-Encoding`, q-values honoured: `gzip;q=0` refuses it,
  `*` accepts it unless gzip is named);
- the request is not HEAD, and the status is not informational, 204, 206 or 304;
- the body is text-like (`text/*`, JSON, JavaScript, XML, SVG: `compressible`), not
  already encoded (`Content-Encoding`), not marked `Cache-Control: no-transform`;
- the body is at least the threshold: a whole body by its length; a streamed one
  (`more_body`) always, chunk by chunk with a sync flush, without `Content-Length`.

Whatever the threshold lets through gets `Vary: Accept-Encoding`, compressed or not
(the answer depends on the header). A compressed whole body gets the compressed
`Content-Length`, and a strong `ETag` is made weak. The middleware sits inside the
request logger and outside the routes, so GraphQL errors, response-cache hits and the
pages' files are compressed like any answer.

Cost (measured on the 2-core bench machine): deflate's level 3 (`LEVEL`) compresses
the 22.7 kB parent-week diary of bench/run to 4.0 kB (5.6x) in ~105 µs, and a 35.8 kB
family week with averages and marks to 5.2 kB (6.9x) in ~155 µs; zlib's default level 6
gives 3.7 kB in ~240 µs and 4.5 kB in ~480 µs, level 1 4.4 kB and 5.7 kB for hardly less
time than 3 (levels 1-3 share deflate's fast strategy). A cached diary answer costs
~0.5 ms of CPU in all, so the gzip of every hit would add a fifth to a half of it:
the gzip of recent bodies is therefore kept under their SHA-256 (`CompressedBodies`:
~12 µs for the 22.7 kB diary, and the compressed forms only, ~4.5 kB each, so that 16 MB
holds more diaries than the response cache's 2,048). In-process the middleware then adds
~23 µs to a 22.7 kB answer whose gzip is kept (the SHA-256 half of it), ~8 µs when the
client does not take gzip; bench/run's parent-week (one identical request) sends 3.9 kB
per response instead of 22.3 kB at a gateway CPU per request within the run's noise. Its
`families` workload (10,000 families' weeks, 13.2 kB each on average, mostly new bodies)
sends 2.6 kB instead, for ~0.1-0.2 ms more gateway CPU per request (2.1 ms without) and
the 16 MB of kept gzip in each process (BENCH_ACCEPT_ENCODING=gzip, with and without
--gateway-env SCHOOL_GATEWAY_COMPRESSION_MIN_BYTES=0).
Bodies of `THREAD_MIN_BYTES` or more are compressed in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.core.bounded_cache import ENTRY_OVERHEAD, BoundedCache
from gateway.http.cors import add_vary

LEVEL: Final = 3
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
THREAD_MIN_BYTES: Final = 128 << 10
MEMO_MAX_ENTRIES: Final = 8192
MEMO_MAX_BYTES: Final = 16 << 20
MEMO_MAX_BODY_BYTES: Final = 1 << 20
_UNCOMPRESSED_STATUSES: Final = frozenset({204, 206, 304})
_COMPRESSIBLE: Final = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "image/svg+xml",
    }
)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` value lets the response be gzip (RFC 9110 12.5.3)."""
    if not accept_encoding:
        return False
    named: float | None = None
    wildcard: float | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        quality = _quality(params)
        if coding in ("gzip", "x-gzip"):
            named = quality if named is None else max(named, quality)
        elif coding == "*":
            wildcard = quality
    if named is not None:
        return named > 0
    return wildcard is not None and wildcard > 0


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


def compressible(content_type: str | None) -> bool:
    """Text-like media types (images, fonts and archives are compressed already)."""
    if not content_type:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in _COMPRESSIBLE
        or media_type.endswith(("+json", "+xml"))
    )


def gzip_bytes(body: bytes, level: int = LEVEL) -> bytes:
    """`body` as one gzip member (no file name, mtime 0: the same bytes every time)."""
    return zlib.compress(body, level, wbits=GZIP_WBITS)


class CompressedBodies:
    """The gzip of recently sent bodies under the body's SHA-256 (the body itself is not
    kept), least recently used out, bounded in entries and bytes."""

    def __init__(self, level: int = LEVEL) -> None:
        self.level = level
        self._cache: BoundedCache[bytes, bytes] = BoundedCache(MEMO_MAX_ENTRIES, MEMO_MAX_BYTES)

    async def gzip(self, body: bytes) -> bytes:
        """The gzip of `body`: remembered, or compressed now (large ones in a thread)."""
        key = hashlib.sha256(body).digest() if len(body) <= MEMO_MAX_BODY_BYTES else None
        if key is not None:
            found = self._cache.get(key)
            if found is not None:
                return found
        if len(body) >= THREAD_MIN_BYTES:
            compressed = await asyncio.to_thread(gzip_bytes, body, self.level)
        else:
            compressed = gzip_bytes(body, self.level)
        if key is not None:
            self._cache.put(key, compressed, len(compressed) + ENTRY_OVERHEAD)
        return compressed


class CompressionMiddleware:
    """gzip-compresses the responses described in the module doc."""

    def __init__(self, app: ASGIApp, *, min_bytes: int, level: int = LEVEL) -> None:
        self.app = app
        self.min_bytes = min_bytes
        self.bodies = CompressedBodies(level)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        gzip = accepts_gzip(Headers(scope=scope).get("accept-encoding"))
        await self.app(scope, receive, _Responder(self, send, gzip=gzip))


class _Responder:
    """One response's `send`: holds the start until the first body decides its headers."""

    def __init__(self, middleware: CompressionMiddleware, send: Send, *, gzip: bool) -> None:
        self.middleware = middleware
        self.send = send
        self.gzip = gzip
        self.held: Message | None = None
        self.stream: zlib._Compress | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if _never_compressed(message):
                await self.send(message)
            else:
                self.held = message
            return
        if self.held is None:
            if self.stream is not None and message["type"] == "http.response.body":
                await self.send(await self._next_chunk(message))
            else:
                await self.send(message)
            return
        start, self.held = self.held, None
        if message["type"] != "http.response.body":
            await self.send(start)
            await self.send(message)
            return
        await self._first_body(start, message)

    async def _first_body(self, start: Message, message: Message) -> None:
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if not more_body and len(body) < self.middleware.min_bytes:
            await self.send(start)
            await self.send(message)
            return
        headers = MutableHeaders(scope=start)
        add_vary(headers, "Accept-Encoding")
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
            _weaken_etag(headers)
            if more_body:
                del headers["Content-Length"]
                self.stream = zlib.compressobj(self.middleware.bodies.level, wbits=GZIP_WBITS)
                message = await self._next_chunk(message)
            else:
                message = {**message, "body": await self.middleware.bodies.gzip(body)}
                if start.get("trailers", False):
                    del headers["Content-Length"]
                else:
                    headers["Content-Length"] = str(len(message["body"]))
        await self.send(start)
        await self.send(message)

    async def _next_chunk(self, message: Message) -> Message:
        assert self.stream is not None
        stream = self.stream
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        flush = zlib.Z_SYNC_FLUSH if more_body else zlib.Z_FINISH

        def compress() -> bytes:
            return stream.compress(body) + stream.flush(flush)

        if len(body) >= THREAD_MIN_BYTES:
            return {**message, "body": await asyncio.to_thread(compress)}
        return {**message, "body": compress()}


def _weaken_etag(headers: MutableHeaders) -> None:
    """A strong `ETag` names one exact byte sequence; the gzip is another, so its tag is
    sent weak (`W/`), as nginx does (If-None-Match compares weakly: still a 304)."""
    etag = headers.get("etag")
    if etag is not None and not etag.startswith("W/"):
        headers["ETag"] = "W/" + etag


def _never_compressed(start: Message) -> bool:
    """Statuses without a body to compress, encoded or incompressible bodies."""
    status = int(start["status"])
    if status < 200 or status in _UNCOMPRESSED_STATUSES:
        return True
    start.setdefault("headers", [])
    headers = Headers(raw=start["headers"])
    if "content-encoding" in headers:
        return True
    if "no-transform" in headers.get("cache-control", "").lower():
        return True
    return not compressible(headers.get("content-type"))
