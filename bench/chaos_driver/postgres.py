"""The chaos run's PostgreSQL: an embedded server in a temporary folder that can be
restarted (`pg_ctl restart -m fast`) and crashed (`pg_ctl stop -m immediate`, then
started again with the options it had).

`gateway.core.embedded` starts it; `pg_ctl` runs as the data folder's owner (the embedded
server's system user when we are root). The server's output goes to its log file, so
no pipe of ours is held by the postmaster.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.core import embedded

PG_CTL_TIMEOUT_S = 60


class ChaosError(RuntimeError):
    """A failure that stops the chaos run with a message."""


@dataclass(frozen=True, slots=True)
class Outage:
    """What a restart or a crash did: when the database went away and when it was back."""

    kind: str
    down_at: float  # time.monotonic() when the stop began
    back_at: float  # time.monotonic() when pg_ctl reported the server accepting connections

    @property
    def seconds(self) -> float:
        return self.back_at - self.down_at


@dataclass
class ChaosPostgres:
    """An embedded server this run started (and stops)."""

    server: embedded.EmbeddedServer
    # One pg_ctl operation at a time: a stop on Ctrl+C waits for a restart or crash that
    # runs in a thread to finish, so the server cannot come back after it was stopped.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, folder: Path) -> ChaosPostgres:
        # Durable settings (fsync, synchronous_commit): with the test suite's ephemeral
        # ones a crash loses the last commits, and the audit check would count that.
        server = embedded.start(folder, ephemeral=False)
        if not server.started_here:
            raise ChaosError(f"a server was already running on {folder}")
        return cls(server)

    @property
    def owner_url(self) -> str:
        return self.server.url

    @property
    def pgdata(self) -> Path:
        return self.server.pgdata

    @property
    def log_path(self) -> Path:
        return self.server.data_dir / "postgres.log"

    def restart(self) -> Outage:
        """`pg_ctl restart -m fast`: sessions are ended, the server comes back at once."""
        with self._lock:
            down_at = time.monotonic()
            self._pg_ctl("restart", "-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT_S))
            return Outage("restart", down_at, time.monotonic())

    def crash(self, down_s: float) -> Outage:
        """`pg_ctl stop -m immediate` (no shutdown checkpoint: crash recovery at start),
        `down_s` seconds without a server, then a start with the same options."""
        with self._lock:
            options = self._postmaster_options()
            down_at = time.monotonic()
            self._pg_ctl("stop", "-m", "immediate", "-w", "-t", str(PG_CTL_TIMEOUT_S))
            time.sleep(down_s)
            self._pg_ctl("start", "-w", "-t", str(PG_CTL_TIMEOUT_S), "-o", options)
            return Outage("crash", down_at, time.monotonic())

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown); quiet when it is already down."""
        with self._lock:
            if (self.pgdata / "postmaster.pid").exists():
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT_S), check=False)

    def _postmaster_options(self) -> str:
        """The options the running postmaster was started with (postmaster.opts, the file
        `pg_ctl restart` reads), minus the binary and the data folder."""
        words = shlex.split((self.pgdata / "postmaster.opts").read_text())[1:]
        kept: list[str] = []
        skip_next = False
        for word in words:
            if skip_next:
                skip_next = False
            elif word == "-D":
                skip_next = True
            else:
                kept.append(word)
        return shlex.join(kept)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        command = [str(embedded.BIN_DIR / "pg_ctl"), "-D", str(self.pgdata), *args]
        user = embedded.SYSTEM_USER if os.geteuid() == 0 else None
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                command,
                user=user,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                check=False,
                timeout=PG_CTL_TIMEOUT_S + 15,
            )
        if check and result.returncode != 0:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
            raise ChaosError(f"pg_ctl {args[0]} failed ({result.returncode}):\n{tail}")
