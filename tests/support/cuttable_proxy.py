"""A TCP proxy in the test's event loop in front of the real PostgreSQL, which a test can
cut: every open connection is closed and new ones are refused — the database away for
the processes behind it, while the suite's own connections keep working."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 65536


class CuttableProxy:
    """Forwards 127.0.0.1:`port` to the database of `target_url` until `cut`."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target_url = target_url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """`target_url` with the proxy's address instead of the database's."""
        parts = urlsplit(self._target_url)
        netloc = parts.netloc.rpartition("@")
        userinfo = netloc[0] + "@" if netloc[1] else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close every connection and refuse new ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def cuttable_proxy(target_url: str) -> AsyncIterator[CuttableProxy]:
    """A started proxy to `target_url`'s database, cut on exit."""
    proxy = CuttableProxy(target_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()
