"""Which code was measured: the git commit and a fingerprint of the gateway's sources.

Targets run the working tree's code as it is when they start. If the sources change
during a run (someone editing while it measures), the report says so: its rows may then
mix versions.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

PACKAGES = ("gateway", "resolvers", "auth", "fixtures")


def source_fingerprint(root: Path) -> str:
    """sha256 over the gateway's Python and SQL sources (paths and contents)."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in {".py", ".sql"} and path.is_file():
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def git_state(root: Path) -> str:
    """The commit, and whether the gateway's sources have uncommitted changes."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", *PACKAGES)
    return f"{commit} + uncommitted changes" if dirty else commit
