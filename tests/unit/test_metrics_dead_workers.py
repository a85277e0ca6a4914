"""Dropping a gone worker's live gauges races with a concurrent scrape doing the same: the
scrape that finds the files already removed still answers (no FileNotFoundError, no 500)."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from gateway.http.metrics import exposition_registry


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_scrape_that_loses_the_race_for_a_dead_workers_files_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = tmp_path / f"gauge_livesum_{_dead_pid()}.db"
    dead.write_bytes(b"")
    listed = glob.glob

    def listed_twice(pattern: str) -> list[str]:
        # As if another scrape listed the same file and removed it first.
        found = listed(pattern)
        return found + found

    monkeypatch.setattr("prometheus_client.multiprocess.glob.glob", listed_twice)
    body = generate_latest(exposition_registry(tmp_path))
    assert not dead.exists()
    assert body == b""  # nothing else was in the folder
