"""The gateway's settings: every environment variable is read and validated here, once at start."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from gateway.core.analytics_settings import AnalyticsSettings
from gateway.core.auth_settings import AuthSettings
from gateway.core.change_settings import ChangeFeedSettings
from gateway.core.metrics_settings import MetricsSettings
from gateway.core.pooler_settings import PoolerSettings
from gateway.core.settings_readers import SettingsError as SettingsError
from gateway.core.settings_readers import read_bool, read_choice, read_dsn, read_int
from gateway.core.signing_keys import SigningKeys, SigningKeySettings

# The source checkout (or, for an installed wheel, the site-packages folder holding gateway/).
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
APP_NAME: Final = "school-gateway"
_ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIN_SECRET_BYTES = 32
# How GraphQL operations run: compiled plans (graphql-core for what they do not cover)
# or graphql-core alone, the reference the compiled plans are tested against.
EXECUTORS = ("compiled", "reference")
# uvicorn's event loop and HTTP parser (gateway.http.serving): uvloop + httptools, or
# the pure-Python asyncio + h11, kept for measuring what the fast pair brings.
ServerName = Literal["fast", "asyncio"]
_SERVERS: Final[Mapping[str, ServerName]] = {
    "fast": "fast",
    "uvloop": "fast",
    "asyncio": "asyncio",
    "h11": "asyncio",
}
LogFormat = Literal["text", "json"]
_LOG_FORMATS: Final[Mapping[str, LogFormat]] = {"text": "text", "json": "json"}
_SWITCH: Final[Mapping[str, bool]] = {
    "1": True,
    "true": True,
    "on": True,
    "yes": True,
    "0": False,
    "false": False,
    "off": False,
    "no": False,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the gateway. Build with `Settings.from_env()`."""

    database_url: str | None
    data_dir: Path
    gateway_role: str
    dev_mode: bool
    jwt_secret: str
    jwt_ttl_seconds: int
    host: str
    port: int
    graphiql: bool
    introspection: bool
    max_query_depth: int
    max_aliases: int
    max_tokens: int
    max_diary_days: int
    statement_timeout_ms: int
    pool_min_size: int
    pool_max_size: int
    log_level: str
    today_override: date | None = None
    # The schema owner's DSN for `seed` and `migrate` (DATABASE_OWNER_URL); DATABASE_URL
    # is the gateway's own login (docs/read-contract.md).
    database_owner_url: str | None = None
    # A streaming replica for the diary, dashboard and analytics reads (DATABASE_REPLICA_URL,
    # the gateway's login there); None: every read on DATABASE_URL's server.
    database_replica_url: str | None = None
    executor: str = "compiled"
    auth: AuthSettings = field(default_factory=AuthSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    changes: ChangeFeedSettings = field(default_factory=ChangeFeedSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    # Machine clients (auth.store.clients): lifetime of a client-credentials access token.
    client_token_ttl_seconds: int = 300
    # The token signing keys (gateway.core.signing_keys): runtime state, this process's copy
    # of gateway.signing_keys, not configuration; shared by copies of these settings.
    signing_keys: SigningKeys = field(default_factory=SigningKeys, compare=False, repr=False)
    # Fields and fragment spreads a document may hold (gateway.execution.limits: QUERY_TOO_COMPLEX).
    max_fields: int = 500
    # Query cost budgets per role (gateway.execution.cost); anonymous requests get the smallest.
    max_cost_anonymous: int = 1_000
    max_cost_parent: int = 100_000
    max_cost_student: int = 50_000
    max_cost_school_admin: int = 100_000
    max_cost_regional_analyst: int = 100_000
    # Slow clients: seconds from a connection's (or a request's) first byte until
    # its headers are complete, and from a request's start until its body is complete.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    # Addresses/networks whose X-Forwarded-For / -Proto are believed; empty: nobody's.
    trusted_proxies: tuple[str, ...] = ()
    # Whole family responses cached per serving process (gateway.http.response_cache).
    response_cache: bool = True
    # How long the access-audit writer waits for more rows before one INSERT
    # (auth.store.audit: the linger); 0: it writes as soon as it wakes.
    audit_linger_ms: int = 50
    # uvicorn's event loop and HTTP parser (gateway.http.serving.server_stack).
    server: ServerName = "fast"
    # Origins of web clients elsewhere that call /graphql with bearer tokens (gateway.http.cors);
    # empty: no CORS headers at all. The session cookie is never honoured cross-origin.
    cors_origins: frozenset[str] = frozenset()
    # Responses of at least this many bytes are gzip-compressed for clients that accept
    # it (gateway.http.compression); 0: never.
    compression_min_bytes: int = 1024
    # Trusted documents (gateway.http.persisted): requests authenticated by the browser
    # session cookie may run only the registered documents of web/documents/; clients may
    # register documents at run time under their SHA-256 (automatic persisted queries).
    cookie_registered_only: bool = True
    apq_registration: bool = True
    # Log lines as text or as one JSON object each (SCHOOL_GATEWAY_LOG_FORMAT).
    log_format: LogFormat = "text"
    # A pooler (PgBouncer) in front of the database, and the direct way for LISTEN.
    pooler: PoolerSettings = field(default_factory=PoolerSettings)

    def today(self) -> date:
        """The diary's "today": the real date unless overridden (dev mode only)."""
        return self.today_override or date.today()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate `SCHOOL_GATEWAY_*` variables and `DATABASE_URL` (default: os.environ).

        Every part (`auth`, `analytics`) reads the same mapping; a bad value raises
        `SettingsError` naming the variable.
        """
        env = os.environ if env is None else env
        dev_mode = read_bool(env, "SCHOOL_GATEWAY_DEV", default=False)
        secret = _jwt_secret(env, dev_mode=dev_mode)
        database_url = read_dsn(env, "DATABASE_URL")
        database_owner_url = read_dsn(env, "DATABASE_OWNER_URL")
        role = _role(env)
        pool_min, pool_max = _pool_sizes(env)
        executor = env.get("SCHOOL_GATEWAY_EXECUTOR", "compiled").strip().lower() or "compiled"
        if executor not in EXECUTORS:
            raise SettingsError("SCHOOL_GATEWAY_EXECUTOR must be compiled or reference")
        host = env.get("SCHOOL_GATEWAY_HOST", "127.0.0.1")
        port = read_int(env, "SCHOOL_GATEWAY_PORT", 8000, low=1, high=65535)
        auth = AuthSettings.from_env(env, dev_mode=dev_mode, host=host, port=port)
        return cls(
            database_url=database_url,
            data_dir=_data_dir(env),
            gateway_role=role,
            dev_mode=dev_mode,
            jwt_secret=secret,
            jwt_ttl_seconds=auth.access_ttl_seconds,
            host=host,
            port=port,
            graphiql=read_bool(env, "SCHOOL_GATEWAY_GRAPHIQL", default=dev_mode),
            introspection=read_bool(env, "SCHOOL_GATEWAY_INTROSPECTION", default=True),
            max_query_depth=read_int(env, "SCHOOL_GATEWAY_MAX_DEPTH", 12, low=2, high=50),
            max_aliases=read_int(env, "SCHOOL_GATEWAY_MAX_ALIASES", 30, low=1, high=1000),
            max_tokens=read_int(env, "SCHOOL_GATEWAY_MAX_TOKENS", 2000, low=50, high=100000),
            max_fields=read_int(env, "SCHOOL_GATEWAY_MAX_FIELDS", 500, low=10, high=100000),
            max_diary_days=read_int(env, "SCHOOL_GATEWAY_MAX_DIARY_DAYS", 31, low=1, high=366),
            statement_timeout_ms=read_int(
                env, "SCHOOL_GATEWAY_STATEMENT_TIMEOUT_MS", 5000, low=100, high=600000
            ),
            pool_min_size=pool_min,
            pool_max_size=pool_max,
            log_level=_log_level(env),
            log_format=read_choice(
                env,
                "SCHOOL_GATEWAY_LOG_FORMAT",
                _LOG_FORMATS,
                default="text",
                expected="text or json",
            ),
            today_override=_today_override(env, dev_mode=dev_mode),
            database_owner_url=database_owner_url,
            database_replica_url=read_dsn(env, "DATABASE_REPLICA_URL"),
            executor=executor,
            auth=auth,
            analytics=AnalyticsSettings.from_env(env),
            changes=ChangeFeedSettings.from_env(env),
            metrics=MetricsSettings.from_env(env, main_port=port),
            pooler=PoolerSettings.from_env(env),
            client_token_ttl_seconds=read_int(
                env, "SCHOOL_GATEWAY_CLIENT_TOKEN_TTL", 300, low=30, high=3600
            ),
            signing_keys=SigningKeys(SigningKeySettings.from_env(env)),
            **_cost_limits(env),
            header_timeout_s=read_int(env, "SCHOOL_GATEWAY_HEADER_TIMEOUT", 10, low=1, high=600),
            body_timeout_s=read_int(env, "SCHOOL_GATEWAY_BODY_TIMEOUT", 30, low=1, high=3600),
            trusted_proxies=_trusted_proxies(env.get("SCHOOL_GATEWAY_TRUSTED_PROXIES", "")),
            response_cache=read_choice(
                env, "SCHOOL_GATEWAY_RESPONSE_CACHE", _SWITCH, default=True, expected="1 or 0"
            ),
            audit_linger_ms=read_int(env, "SCHOOL_GATEWAY_AUDIT_LINGER_MS", 50, low=0, high=1000),
            server=read_choice(
                env,
                "SCHOOL_GATEWAY_SERVER",
                _SERVERS,
                default="fast",
                expected="'fast' or 'asyncio'",
            ),
            cors_origins=_cors_origins(env.get("SCHOOL_GATEWAY_CORS_ORIGINS", "")),
            compression_min_bytes=read_int(
                env, "SCHOOL_GATEWAY_COMPRESSION_MIN_BYTES", 1024, low=0, high=1 << 30
            ),
            cookie_registered_only=read_choice(
                env,
                "SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY",
                _SWITCH,
                default=True,
                expected="1 or 0",
            ),
            apq_registration=read_choice(
                env, "SCHOOL_GATEWAY_APQ_REGISTRATION", _SWITCH, default=True, expected="1 or 0"
            ),
        )


def default_data_dir(env: Mapping[str, str], root: Path = PROJECT_ROOT) -> Path:
    """Where the data folder is unless SCHOOL_GATEWAY_DATA_DIR says otherwise.

    In a source checkout (`root` holds pyproject.toml): `<checkout>/.data`. In an
    installed package (`root` is site-packages): the per-user data directory,
    `$XDG_DATA_HOME/school-gateway` (an absolute XDG_DATA_HOME only, as the XDG
    specification says), else `~/.local/share/school-gateway`.
    """
    if (root / "pyproject.toml").is_file():
        return root / ".data"
    xdg_data_home = env.get("XDG_DATA_HOME", "")
    if xdg_data_home and Path(xdg_data_home).is_absolute():
        return Path(xdg_data_home) / APP_NAME
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / APP_NAME


def _data_dir(env: Mapping[str, str]) -> Path:
    explicit = env.get("SCHOOL_GATEWAY_DATA_DIR")
    return Path(explicit) if explicit is not None else default_data_dir(env)


def _jwt_secret(env: Mapping[str, str], *, dev_mode: bool) -> str:
    """SCHOOL_GATEWAY_JWT_SECRET; in dev mode, when unset, a fresh random key."""
    secret = env.get("SCHOOL_GATEWAY_JWT_SECRET", "")
    if not secret:
        if not dev_mode:
            raise SettingsError(
                "SCHOOL_GATEWAY_JWT_SECRET is required outside dev mode "
                "(set SCHOOL_GATEWAY_DEV=1 for a generated development key)"
            )
        return secrets.token_urlsafe(_MIN_SECRET_BYTES)
    if len(secret.encode()) < _MIN_SECRET_BYTES:
        raise SettingsError(
            f"SCHOOL_GATEWAY_JWT_SECRET must be at least {_MIN_SECRET_BYTES} bytes long"
        )
    return secret


def _role(env: Mapping[str, str]) -> str:
    role = env.get("SCHOOL_GATEWAY_DB_ROLE", "school_gateway")
    if not _ROLE_RE.match(role):
        raise SettingsError(
            f"SCHOOL_GATEWAY_DB_ROLE must be a lower-case SQL identifier, got {role!r}"
        )
    return role


def _pool_sizes(env: Mapping[str, str]) -> tuple[int, int]:
    pool_min = read_int(env, "SCHOOL_GATEWAY_POOL_MIN", 2, low=1, high=100)
    pool_max = read_int(env, "SCHOOL_GATEWAY_POOL_MAX", 10, low=1, high=500)
    if pool_min > pool_max:
        raise SettingsError("SCHOOL_GATEWAY_POOL_MIN must not exceed SCHOOL_GATEWAY_POOL_MAX")
    return pool_min, pool_max


def _log_level(env: Mapping[str, str]) -> str:
    log_level = env.get("SCHOOL_GATEWAY_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError("SCHOOL_GATEWAY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return log_level


# name of the Settings field → (environment variable, default)
COST_LIMIT_VARIABLES: dict[str, tuple[str, int]] = {
    "max_cost_anonymous": ("SCHOOL_GATEWAY_MAX_COST_ANONYMOUS", 1_000),
    "max_cost_parent": ("SCHOOL_GATEWAY_MAX_COST_PARENT", 100_000),
    "max_cost_student": ("SCHOOL_GATEWAY_MAX_COST_STUDENT", 50_000),
    "max_cost_school_admin": ("SCHOOL_GATEWAY_MAX_COST_SCHOOL_ADMIN", 100_000),
    "max_cost_regional_analyst": ("SCHOOL_GATEWAY_MAX_COST_REGIONAL_ANALYST", 100_000),
}


def _cost_limits(env: Mapping[str, str]) -> dict[str, int]:
    return {
        name: read_int(env, variable, default, low=1, high=100_000_000)
        for name, (variable, default) in COST_LIMIT_VARIABLES.items()
    }


def _trusted_proxies(raw: str) -> tuple[str, ...]:
    """SCHOOL_GATEWAY_TRUSTED_PROXIES: comma-separated IP addresses or CIDR networks."""
    networks: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                f"SCHOOL_GATEWAY_TRUSTED_PROXIES must list IP addresses or networks, got {item!r}"
            ) from None
        single = network.num_addresses == 1
        networks.append(str(network.network_address) if single else str(network))
    return tuple(networks)


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# An origin's host as a browser serialises it: ASCII labels (IDNA's xn-- form for others).
_ORIGIN_HOST: Final = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def _cors_origins(raw: str) -> frozenset[str]:
    """SCHOOL_GATEWAY_CORS_ORIGINS: comma-separated exact origins (`https://host[:port]`),
    lower-cased, a default port dropped (as a browser's `Origin` has it); no wildcard, and
    ASCII hosts only (an international name in its xn-- form)."""
    name = "SCHOOL_GATEWAY_CORS_ORIGINS"
    origins: set[str] = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            parts = urlsplit(item.lower())
        except ValueError:  # a bracketed host that is no IPv6 address
            raise SettingsError(f"{name}: {item!r} has a bad host") from None
        if (
            parts.scheme not in _DEFAULT_PORTS
            or not parts.hostname
            or parts.username is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise SettingsError(f"{name}: {item!r} is not an origin like https://app.example.ru")
        try:
            port = parts.port
        except ValueError:
            raise SettingsError(f"{name}: {item!r} has a bad port") from None
        host = _origin_host(parts.hostname)
        if host is None:
            raise SettingsError(
                f"{name}: {item!r} has a bad host (no wildcard; an international name "
                "in its xn-- form, as browsers send it)"
            )
        explicit = port is not None and port != _DEFAULT_PORTS[parts.scheme]
        origins.add(f"{parts.scheme}://{host}:{port}" if explicit else f"{parts.scheme}://{host}")
    return frozenset(origins)


def _origin_host(hostname: str) -> str | None:
    """The host of an origin as its `Origin` header has it, or None if it cannot be one."""
    if "%" in hostname:
        return None
    if ":" in hostname:
        try:
            return f"[{ipaddress.IPv6Address(hostname).compressed}]"
        except ValueError:
            return None
    return hostname if _ORIGIN_HOST.fullmatch(hostname) else None


def _today_override(env: Mapping[str, str], *, dev_mode: bool) -> date | None:
    raw = env.get("SCHOOL_GATEWAY_TODAY")
    if not raw:
        return None
    if not dev_mode:
        raise SettingsError("SCHOOL_GATEWAY_TODAY is only allowed in dev mode")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"SCHOOL_GATEWAY_TODAY must be YYYY-MM-DD, got {raw!r}") from None
