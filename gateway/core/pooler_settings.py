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

    @property
    def pooled(self) -> bool:
        """A pooler is in between: no startup parameters but `application_name`."""
        return self.mode != "none"

    @property
    def statement_cache(self) -> bool:
        """asyncpg's named prepared statements survive: not through transaction pooling."""
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
        return cls(mode=mode, direct_url=direct_url)
