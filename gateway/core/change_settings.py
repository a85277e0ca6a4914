"""Settings of the change feed (subscriptions and `diaryChanges`), read at start:
`settings.changes`.

- `SCHOOL_GATEWAY_SUBSCRIPTIONS` (default 1): serve subscriptions (SSE and WebSocket); 0
  refuses them (`diaryChanges` stays).
- `SCHOOL_GATEWAY_CHANGE_RETENTION_S` (default 604800, 7 days): the oldest cursor accepted;
  the change log must keep at least that much.
- `SCHOOL_GATEWAY_SUBSCRIPTION_HEARTBEAT_S` (default 15): an idle stream gets a heartbeat
  this often, so that proxies do not cut it.
- `SCHOOL_GATEWAY_SUBSCRIPTION_QUEUE` (default 200): events waiting for one subscriber;
  past that the consumer is too slow and its stream is ended (SLOW_CONSUMER) — it resumes
  with its last cursor.
- `SCHOOL_GATEWAY_SUBSCRIPTION_RECHECK_S` (default 2): how often every stream's session is
  checked again (one statement for all); a revoked session's stream ends by then.
- `SCHOOL_GATEWAY_SUBSCRIPTIONS_PER_ACCOUNT` (default 16): open streams per account and
  process (TOO_MANY_SUBSCRIPTIONS past that).
- `SCHOOL_GATEWAY_SUBSCRIPTIONS_MAX` (default 20000): open streams per process, and open
  WebSockets per process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.core.settings_readers import read_bool, read_int


@dataclass(frozen=True, slots=True)
class ChangeFeedSettings:
    """The change feed's knobs; defaults are production defaults."""

    subscriptions: bool = True
    retention_s: int = 604_800
    heartbeat_s: int = 15
    queue_size: int = 200
    recheck_s: int = 2
    per_account: int = 16
    max_subscriptions: int = 20_000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChangeFeedSettings:
        """Read and validate the variables above (`SettingsError` names a bad one)."""
        prefix = "SCHOOL_GATEWAY_SUBSCRIPTION_"
        return cls(
            subscriptions=read_bool(env, "SCHOOL_GATEWAY_SUBSCRIPTIONS", default=True),
            retention_s=read_int(
                env, "SCHOOL_GATEWAY_CHANGE_RETENTION_S", 604_800, low=60, high=31_536_000
            ),
            heartbeat_s=read_int(env, prefix + "HEARTBEAT_S", 15, low=1, high=300),
            queue_size=read_int(env, prefix + "QUEUE", 200, low=1, high=100_000),
            recheck_s=read_int(env, prefix + "RECHECK_S", 2, low=1, high=300),
            per_account=read_int(
                env, "SCHOOL_GATEWAY_SUBSCRIPTIONS_PER_ACCOUNT", 16, low=1, high=10_000
            ),
            max_subscriptions=read_int(
                env, "SCHOOL_GATEWAY_SUBSCRIPTIONS_MAX", 20_000, low=1, high=1_000_000
            ),
        )
