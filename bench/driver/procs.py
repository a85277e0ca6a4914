"""Processes the benchmark starts: free ports, readiness, clean stops, CPU and memory.

Every server runs in its own session (process group), so stopping it reaches its workers
too; `ProcessSet` stops whatever it started, also on Ctrl+C or a failure, and kills
the helper processes started elsewhere that are `track`ed (the families' writer) and
still running when it stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import psutil

STOP_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 120.0


class BenchError(RuntimeError):
    """A failure that stops the benchmark with a message (no traceback)."""


# Helper processes (each the leader of its own session) that ProcessSet kills on exit.
_TRACKED: dict[int, subprocess.Popen[str]] = {}


def track(process: subprocess.Popen[str]) -> None:
    """Kill `process` (its process group) when the ProcessSet stops, unless untracked."""
    _TRACKED[process.pid] = process


def untrack(process: subprocess.Popen[str]) -> None:
    """`process` has been stopped by its owner."""
    _TRACKED.pop(process.pid, None)


def kill_tracked() -> None:
    """SIGKILL every tracked process group still running, and reap it."""
    while _TRACKED:
        _pid, process = _TRACKED.popitem()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A started server process (the leader of its own process group)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def tree(self) -> list[psutil.Process]:
        """The server process and all its descendants that are alive now."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after a timeout."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        # Workers that outlived their leader are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


@dataclass
class ProcessSet:
    """Starts servers and stops every one of them on exit, in reverse order."""

    log_dir: Path
    servers: list[Server] = field(default_factory=list)

    def start(
        self, name: str, command: Sequence[str], *, env: Mapping[str, str], cwd: Path
    ) -> Server:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name.replace(' ', '-')}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(name=name, process=process, log_path=log_path)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        kill_tracked()
        while self.servers:
            self.servers.pop().stop()

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def wait_ready(server: Server, url: str, *, method: str = "GET", body: bytes = b"") -> None:
    """Poll `url` until it answers 200; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    headers = {"Content-Type": "application/json"}
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(f"{server.name} exited during start:\n{server.log_tail()}")
        try:
            response = httpx.request(method, url, content=body or None, headers=headers, timeout=2)
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise BenchError(f"{server.name} did not answer {url} in time:\n{server.log_tail()}")


def cpu_seconds(processes: Sequence[psutil.Process]) -> dict[int, float]:
    """User + system CPU seconds of each live process, by pid."""
    result: dict[int, float] = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            result[process.pid] = times.user + times.system
    return result


def cpu_delta(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds spent between two snapshots (processes born in between count from 0)."""
    return sum(spent - before.get(pid, 0.0) for pid, spent in after.items())


class PeakRss:
    """Samples the resident memory of a server's processes in a thread; keeps the peak
    and the first sample's (`first_bytes`: the largest serving process as sampling began).
    """

    def __init__(self, server: Server, *, interval_s: float = 0.1) -> None:
        self.server = server
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.first_bytes: int | None = None
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        serving = _serving_processes(self.server.tree())
        self.processes = max(self.processes, len(serving))
        largest = 0
        for process in serving:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                largest = max(largest, process.memory_info().rss)
        if self.first_bytes is None:
            self.first_bytes = largest
        self.peak_bytes = max(self.peak_bytes, largest)

    def __enter__(self) -> PeakRss:
        self.sample()  # `first_bytes`: before the load starts
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _serving_processes(tree: Sequence[psutil.Process]) -> list[psutil.Process]:
    """The processes that serve requests: the leaves of the tree (workers), else the root."""
    if len(tree) <= 1:
        return list(tree)
    pids = {process.pid for process in tree}
    parents: set[int] = set()
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.ppid() in pids:
                parents.add(process.ppid())
    return [process for process in tree if process.pid not in parents] or list(tree)
