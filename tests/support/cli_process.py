"""The `school-gateway` command run as a real process against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

COMMAND = str(Path(sys.executable).with_name("school-gateway"))


def run_school_gateway(
    database_url: str, data_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`school-gateway ARGS` as a real process on the test database (no other settings)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SCHOOL_GATEWAY_") and key != "DATABASE_URL"
    }
    env.update({"DATABASE_URL": database_url, "SCHOOL_GATEWAY_DATA_DIR": str(data_dir)})
    return run_command(args, env)


def run_command(
    args: Sequence[str], env: dict[str, str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`school-gateway ARGS` with exactly `env`, its output captured, no stdin."""
    return subprocess.run(
        [COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
