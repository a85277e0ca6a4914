"""A real PgBouncer (Debian's package, as `.ci/run` installs it) in front of the test server.

`running_pgbouncer` writes an ini and a userlist into a folder of its own, starts
`pgbouncer` on a free port (TCP only: no Unix socket), waits until it accepts a client
and stops it afterwards. Run as root it runs as the embedded server's system user
(PgBouncer refuses to run as root). Its log is kept in the folder and shown when a test
fails to start it.

Where the binary is: `PGBOUNCER` (a path), else `pgbouncer` on PATH, else
/usr/sbin/pgbouncer. Without one the tests that need it are skipped, unless
REQUIRE_PGBOUNCER_TESTS=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import pytest

from gateway.core.embedded import SYSTEM_USER
from tests.support.serve_process import free_port

START_TIMEOUT_S = 15
DEBIAN_PATH = "/usr/sbin/pgbouncer"
PoolMode = Literal["session", "transaction"]


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable, or None."""
    explicit = os.environ.get("PGBOUNCER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("pgbouncer")
    if found:
        return found
    return DEBIAN_PATH if os.access(DEBIAN_PATH, os.X_OK) else None


def require_pgbouncer() -> str:
    """The binary; skips the test without one (fails it under REQUIRE_PGBOUNCER_TESTS=1)."""
    binary = pgbouncer_binary()
    if binary is not None:
        return binary
    message = "no pgbouncer (set PGBOUNCER or apt-get install pgbouncer; .ci/run installs it)"
    if os.environ.get("REQUIRE_PGBOUNCER_TESTS") == "1":
        pytest.fail(f"PgBouncer tests required (REQUIRE_PGBOUNCER_TESTS=1): {message}")
    pytest.skip(message)


@dataclass(frozen=True, slots=True)
class PgBouncer:
    """A running PgBouncer: its port, process id and folder (ini, userlist, log)."""

    port: int
    pid: int
    folder: Path

    def url(self, database: str, user: str, password: str) -> str:
        """A DSN of `database` (an alias of the ini) through this PgBouncer."""
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self.port}/{database}"
        )

    def log(self) -> str:
        return (self.folder / "pgbouncer.log").read_text(encoding="utf-8", errors="replace")


def _ini(
    server_url: str,
    databases: Mapping[str, str],
    *,
    port: int,
    folder: Path,
    pool_mode: PoolMode,
    pool_size: int,
) -> str:
    """pgbouncer.ini: each alias of `databases` is the server's database with the extra
    connection options given (e.g. a connect_query); clients log in with SCRAM."""
    server = urlsplit(server_url)
    target = f"host={server.hostname} port={server.port} dbname={server.path.lstrip('/')}"
    lines = ["[databases]"]
    lines += [f"{alias} = {target} {extra}".rstrip() for alias, extra in databases.items()]
    lines += [
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {folder / 'userlist.txt'}",
        f"logfile = {folder / 'pgbouncer.log'}",
        f"pidfile = {folder / 'pgbouncer.pid'}",
        f"pool_mode = {pool_mode}",
        f"default_pool_size = {pool_size}",
        "min_pool_size = 0",
        "reserve_pool_size = 0",
        "max_client_conn = 500",
        "",
    ]
    return "\n".join(lines)


def _userlist(users: Mapping[str, str]) -> str:
    """The auth file: plain-text passwords, which PgBouncer also uses to log in to the
    server with SCRAM (a SCRAM secret could not be used for that)."""

    def quoted(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    return "".join(f"{quoted(user)} {quoted(password)}\n" for user, password in users.items())


@contextlib.contextmanager
def running_pgbouncer(
    binary: str,
    server_url: str,
    users: Mapping[str, str],
    databases: Mapping[str, str],
    *,
    pool_mode: PoolMode = "transaction",
    pool_size: int = 2,
) -> Iterator[PgBouncer]:
    """`binary` (see `require_pgbouncer`) in front of `server_url`'s server with these
    users (name → password) and database aliases (alias → extra options of its
    [databases] line, e.g. "connect_query='SET jit = off'")."""
    with tempfile.TemporaryDirectory(prefix="school-gateway-pgbouncer-") as name:
        folder = Path(name)
        port = free_port()
        ini = folder / "pgbouncer.ini"
        ini.write_text(
            _ini(
                server_url,
                databases,
                port=port,
                folder=folder,
                pool_mode=pool_mode,
                pool_size=pool_size,
            ),
            encoding="utf-8",
        )
        userlist = folder / "userlist.txt"
        userlist.write_text(_userlist(users), encoding="utf-8")
        userlist.chmod(0o600)
        user = _run_as(folder)
        process = subprocess.Popen(
            [binary, "-q", str(ini)],
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        bouncer = PgBouncer(port=port, pid=process.pid, folder=folder)
        try:
            _wait_until_accepting(process, bouncer)
            yield bouncer
        finally:
            _stop(process)


def _run_as(folder: Path) -> str | None:
    """Root may not run PgBouncer: the embedded server's system user does, owning `folder`."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in (folder, *folder.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


def _wait_until_accepting(process: subprocess.Popen[str], bouncer: PgBouncer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            _, stderr = process.communicate()
            raise RuntimeError(f"pgbouncer exited: {stderr}\n{_log_of(bouncer)}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", bouncer.port), timeout=0.5),
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"pgbouncer did not start:\n{_log_of(bouncer)}")
        time.sleep(0.05)


def _log_of(bouncer: PgBouncer) -> str:
    try:
        return bouncer.log()
    except FileNotFoundError:
        return "(no log)"


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: immediate shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr is not None:
        process.stderr.close()


def login_credentials(url: str) -> tuple[str, str]:
    """The user and password of a DSN (PgBouncer's userlist needs them)."""
    parts = urlsplit(url)
    assert parts.username is not None and parts.password is not None
    return unquote(parts.username), unquote(parts.password)


@contextlib.contextmanager
def gateway_pgbouncer(
    database_url: str, statement_timeout_ms: int, *, pool_size: int
) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode for the gateway's login of `database_url`: database
    `gateway` with the gateway's session defaults set by connect_query (in production:
    ALTER ROLE ... SET), `bare` without them."""
    user, password = login_credentials(database_url)
    defaults = f"connect_query='SET statement_timeout = {statement_timeout_ms}; SET jit = off'"
    with running_pgbouncer(
        require_pgbouncer(),
        database_url,
        {user: password},
        {"gateway": defaults, "bare": ""},
        pool_size=pool_size,
    ) as running:
        yield running
