"""Settings of a connection pooler (PgBouncer) between the gateway and PostgreSQL, read at
start: `settings.pooler`. What each mode changes is gateway.core.pooler's; why, README
"PgBouncer".

- `SCHOOL_GATEWAY_DATABASE_POOLER` (default `none`): what the gateway's database URLs
  (DATABASE_URL, DATABASE_REPLICA_URL, DATABASE_ANALYTICS_URL) lead to. `none`: PostgreSQL
  itself. `session`: a pooler in session mode (one server session per client connection).
  `transaction`: a pooler in transaction mode (server sessions shared between clients
  from one transaction to the next): asyncpg's statement cache is off.
  In both pooler modes only `application_name` is sent at connection start (PgBouncer
  refuses other startup parameters): `statement_timeout` and `jit` must be the login
  role's defaults (checked when a pool opens), and the DSN must log in as the gateway's
  role itself (no SET ROLE).
- `SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE` (default 1, 0 with `transaction`): asyncpg's
  named prepared statements. Through PgBouncer >= 1.21 with `max_prepared_statements` > 0
  they survive transaction pooling: set 1 there (not tested here: Debian bookworm ships
  1.18). Off, every statement is planned at each execution (bench/pgbouncer measures it).
- `DATABASE_DIRECT_URL`: a direct connection to the primary (the gateway's login role)
  for what needs a session of its own: the change feed's LISTEN. Required with
  `transaction` unless subscriptions are off (SCHOOL_GATEWAY_SUBSCRIPTIONS=0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from gateway.core.settings_readers import SettingsError, read_bool, read_choice, read_dsn

PoolerMode = Literal["none", "session", "transaction"]
_MODES: Final[Mapping[str, PoolerMode]] = {
    "none": "none",
    "session": "session",
    "transaction": "transaction",
}


@dataclass(frozen=True, slots=True)
class PoolerSettings:
    """Whether the database URLs lead through a pooler, and the direct way around it."""

    mode: PoolerMode = "none"
    direct_url: str | None = None
    # None: on unless `mode` is transaction.
    statement_cache: bool | None = None

    @property
    def pooled(self) -> bool:
        """A pooler is in between: no startup parameters but `application_name`."""
        return self.mode != "none"

    @property
    def caches_statements(self) -> bool:
        """asyncpg keeps named prepared statements: by default not through transaction
        pooling (PgBouncer < 1.21 loses them)."""
        if self.statement_cache is not None:
            return self.statement_cache
        return self.mode != "transaction"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PoolerSettings:
        """Read and validate the variables above (`SettingsError` names a bad one)."""
        mode = read_choice(
            env,
            "SCHOOL_GATEWAY_DATABASE_POOLER",
            _MODES,
            default="none",
            expected="none, session or transaction",
        )
        direct_url = read_dsn(env, "DATABASE_DIRECT_URL")
        subscriptions = read_bool(env, "SCHOOL_GATEWAY_SUBSCRIPTIONS", default=True)
        if mode == "transaction" and subscriptions and direct_url is None:
            raise SettingsError(
                "SCHOOL_GATEWAY_DATABASE_POOLER=transaction needs DATABASE_DIRECT_URL (a "
                "direct connection to the primary for the change feed's LISTEN, which a "
                "transaction pooler cannot carry) or SCHOOL_GATEWAY_SUBSCRIPTIONS=0"
            )
        cache = env.get("SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE", "").strip()
        statement_cache = (
            read_bool(env, "SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE", default=True)
            if cache
            else None
        )
        return cls(mode=mode, direct_url=direct_url, statement_cache=statement_cache)
