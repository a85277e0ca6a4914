"""Settings of the Prometheus metrics, read at start: `settings.metrics`.

- `SCHOOL_GATEWAY_METRICS` (default 1): expose the metrics; 0 turns the exposition and
  the per-request accounting off.
- `SCHOOL_GATEWAY_METRICS_PATH` (default `/metrics`): the path of the exposition.
- `SCHOOL_GATEWAY_METRICS_PORT` (default unset): `school-gateway serve` serves the
  metrics on this port and the application's own port does not serve them.
- `SCHOOL_GATEWAY_METRICS_HOST` (default `127.0.0.1`): the address (an IPv4 or IPv6
  literal) that port listens on: not the application's, which may be public (0.0.0.0).
- `SCHOOL_GATEWAY_METRICS_DIR` (default unset: a temporary folder): where the workers of
  `serve --workers N` (N > 1) keep their values; emptied when `serve` starts.
- `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's own variable, read by the library when
  first imported): the folder this process keeps its values in. `serve` sets it for its
  workers (and refuses it set for itself: the command's own process would keep its values
  there); set it only for workers started otherwise (e.g. uvicorn's own `--workers`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.core.settings_readers import SettingsError, read_bool, read_int

# Paths the application serves itself: the metrics path must not hide one of them.
_RESERVED_PREFIXES: Final = ("/graphql", "/auth", "/oauth", "/static", "/dev-idp")
_RESERVED_PATHS: Final = frozenset({"/", "/healthz", "/livez", "/readyz"})
_PATH_RE: Final = re.compile(r"^/[A-Za-z0-9._~/-]{1,200}$")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Whether, where and on which port the metrics are exposed."""

    enabled: bool = True
    path: str = "/metrics"
    port: int | None = None
    host: str = "127.0.0.1"  # the separate port's address
    multiproc_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR: this process's folder
    folder: Path | None = None  # SCHOOL_GATEWAY_METRICS_DIR: serve's workers' folder

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, main_port: int | None = None) -> MetricsSettings:
        """Read and validate the variables above (`SettingsError` names a bad one)."""
        port = None
        if env.get("SCHOOL_GATEWAY_METRICS_PORT", "").strip():
            port = read_int(env, "SCHOOL_GATEWAY_METRICS_PORT", 0, low=1, high=65535)
            if port == main_port:
                raise SettingsError(
                    "SCHOOL_GATEWAY_METRICS_PORT must differ from SCHOOL_GATEWAY_PORT"
                )
        multiproc_dir = env.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
        folder = env.get("SCHOOL_GATEWAY_METRICS_DIR", "").strip()
        return cls(
            enabled=read_bool(env, "SCHOOL_GATEWAY_METRICS", default=True),
            path=_path(env.get("SCHOOL_GATEWAY_METRICS_PATH", "").strip() or "/metrics"),
            port=port,
            host=_host(env.get("SCHOOL_GATEWAY_METRICS_HOST", "").strip() or "127.0.0.1"),
            multiproc_dir=Path(multiproc_dir) if multiproc_dir else None,
            folder=Path(folder) if folder else None,
        )


def _host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise SettingsError(
            "SCHOOL_GATEWAY_METRICS_HOST must be an IP address like 127.0.0.1, 10.0.0.5 or "
            f"::1, got {host!r}"
        ) from None


def _path(path: str) -> str:
    name = "SCHOOL_GATEWAY_METRICS_PATH"
    if not _PATH_RE.fullmatch(path) or "//" in path or path.endswith("/"):
        raise SettingsError(f"{name} must be a plain absolute path like /metrics, got {path!r}")
    if path in _RESERVED_PATHS or any(
        path == prefix or path.startswith(prefix + "/") for prefix in _RESERVED_PREFIXES
    ):
        raise SettingsError(f"{name} must not be a path the gateway serves, got {path!r}")
    return path
