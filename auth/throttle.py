"""Throttling of password sign-in: per login and per client address, across workers.

The state lives in gateway.sign_in_throttle (one row per key, `login:<login>` with the
login case-folded, `address:<client address>`), changed by single atomic statements,
so every worker process of the gateway sees the same counters.

The rule (times are the database's `now()`):

- An attempt is *counted before the password is checked*: admitting it adds one to the
  failure counter of both keys. A check that succeeds (the right password) gives the
  attempt back: the login's row is deleted (its counter and any lock reset) and the
  address's counter goes down by one. So a burst of parallel guesses cannot outrun
  the counter, and a worker that dies mid-check leaves the attempt counted as failed.
- Failures are counted in a fixed window of `failure_window_seconds` that starts at the
  first counted failure; a later attempt after the window has passed starts a new one.
- The attempt that brings a key's counter to its limit (`login_max_failures` for a
  login, `address_max_failures` for an address) locks that key for `lockout_seconds`.
  That attempt is still checked; if its password is right, the lock it set is lifted.
  So after N failed attempts the next one, even with the right password, is refused
  with 429 SIGN_IN_LOCKED and `Retry-After` (seconds until the lock ends, at least 1).
  Refused attempts are not counted: they neither extend nor renew a lock.
- Progressive delay: an admitted attempt waits before its password is checked, for
  `0.1 s * 2**(k-1)` capped at 1.6 s, where k is the number of failures counted
  before it: the login's, or the address's scaled to the login limit
  (`address_failures * login_max_failures // address_max_failures`), whichever is larger.
  No earlier failures, no delay.
- Rows whose window and lock have both ended are deleted now and then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from gateway.auth_settings import AuthSettings

DELAY_STEP_SECONDS: Final = 0.1
MAX_DELAY_SECONDS: Final = 1.6
PURGE_INTERVAL_SECONDS: Final = 300.0
LOGIN_PREFIX: Final = "login:"
ADDRESS_PREFIX: Final = "address:"
MAX_KEY_LENGTH: Final = 200

# A key's window is over (or its lock has ended): the attempt starts a new window.
_FRESH = (
    "(t.window_started <= now() - make_interval(secs => $4)"
    " OR (t.locked_until IS NOT NULL AND t.locked_until <= now()))"
)
_LIMIT = f"(CASE WHEN t.key LIKE '{LOGIN_PREFIX}%' THEN $2::int ELSE $3::int END)"
_COUNT = f"(CASE WHEN {_FRESH} THEN 1 ELSE t.failures + 1 END)"

# One statement: refuse if any key is locked; otherwise count the attempt on every key,
# locking a key whose counter reaches its limit. A row locked concurrently is not
# updated (and not returned): the caller treats a missing key as refused.
_ADMIT = f"""
WITH locked AS (
    SELECT max(t.locked_until) AS until
    FROM gateway.sign_in_throttle t
    WHERE t.key = ANY($1::text[]) AND t.locked_until > now()
), counted AS (
    INSERT INTO gateway.sign_in_throttle AS t (key, failures, window_started, locked_until)
    SELECT k.key, 1, now(),
           CASE WHEN (CASE WHEN k.key LIKE '{LOGIN_PREFIX}%' THEN $2::int ELSE $3::int END) <= 1
                THEN now() + make_interval(secs => $5) END
    FROM unnest($1::text[]) AS k(key)
    WHERE (SELECT until FROM locked) IS NULL
    ON CONFLICT (key) DO UPDATE SET
        failures = {_COUNT},
        window_started = CASE WHEN {_FRESH} THEN now() ELSE t.window_started END,
        locked_until = CASE WHEN {_COUNT} >= {_LIMIT}
                            THEN now() + make_interval(secs => $5) END
    WHERE t.locked_until IS NULL OR t.locked_until <= now()
    RETURNING t.key, t.failures, t.window_started, t.locked_until
)
SELECT c.key, c.failures, c.window_started, c.locked_until, NULL::int AS retry_after
FROM counted c
UNION ALL
SELECT NULL, NULL, NULL, NULL, greatest(ceil(extract(epoch FROM l.until - now())), 1)::int
FROM locked l WHERE l.until IS NOT NULL
"""

# The seconds until the latest lock of these keys ends (after a lost race).
_RETRY_AFTER = """
SELECT greatest(ceil(extract(epoch FROM max(locked_until) - now())), 1)::int
FROM gateway.sign_in_throttle WHERE key = ANY($1::text[]) AND locked_until > now()
"""

# The right password: reset the login, give the attempt back to the address (in the
# window it was counted in), lifting the address lock if this attempt set it.
_SUCCEEDED = """
WITH reset AS (
    DELETE FROM gateway.sign_in_throttle WHERE key = $1
)
UPDATE gateway.sign_in_throttle
SET failures = greatest(failures - 1, 0),
    locked_until = CASE WHEN locked_until = $4 THEN NULL ELSE locked_until END
WHERE key = $2 AND window_started = $3
"""

_PURGE = """
DELETE FROM gateway.sign_in_throttle
WHERE window_started <= now() - make_interval(secs => $1)
  AND (locked_until IS NULL OR locked_until <= now())
"""


@dataclass(frozen=True, slots=True)
class CountedKey:
    """A key's row as the admitting statement left it."""

    key: str
    failures: int
    window_started: datetime
    locked_until: datetime | None


@dataclass(frozen=True, slots=True)
class Admission:
    """The throttle's answer to an attempt: refused (with Retry-After) or admitted."""

    login_key: str
    address_key: str
    retry_after: int | None = None  # set when refused
    delay_seconds: float = 0.0
    address: CountedKey | None = None

    @property
    def allowed(self) -> bool:
        return self.retry_after is None


def login_key(login: str) -> str:
    """The throttle key of a login (case-folded: case variants share one counter)."""
    return (LOGIN_PREFIX + login.strip().casefold())[:MAX_KEY_LENGTH]


def address_key(address: str) -> str:
    """The throttle key of a client address."""
    return (ADDRESS_PREFIX + address)[:MAX_KEY_LENGTH]


def delay_for(failures_before: int) -> float:
    """The wait before checking an attempt that follows `failures_before` failures."""
    if failures_before <= 0:
        return 0.0
    return min(DELAY_STEP_SECONDS * 2.0 ** min(failures_before - 1, 16), MAX_DELAY_SECONDS)


class SignInThrottle:
    """Admits or refuses password attempts; one per application."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._next_purge = 0.0

    async def admit(self, pool: asyncpg.Pool, *, login: str, address: str) -> Admission:
        """Count an attempt on its login and address, or refuse it while either is locked."""
        await self._purge_now_and_then(pool)
        keys = [login_key(login), address_key(address)]
        s = self._settings
        rows = await pool.fetch(
            _ADMIT,
            keys,
            s.login_max_failures,
            s.address_max_failures,
            float(s.failure_window_seconds),
            float(s.lockout_seconds),
        )
        counted = {row["key"]: _counted(row) for row in rows if row["key"] is not None}
        refused = [row["retry_after"] for row in rows if row["retry_after"] is not None]
        if refused or len(counted) < len(keys):
            retry_after = refused[0] if refused else await self._retry_after(pool, keys)
            return Admission(keys[0], keys[1], retry_after=retry_after)
        return Admission(
            keys[0],
            keys[1],
            delay_seconds=self._delay(counted[keys[0]], counted[keys[1]]),
            address=counted[keys[1]],
        )

    async def succeeded(self, pool: asyncpg.Pool, admission: Admission) -> None:
        """The attempt's password was right: reset the login, release the address count."""
        address = admission.address
        if address is None:
            return
        await pool.execute(
            _SUCCEEDED,
            admission.login_key,
            admission.address_key,
            address.window_started,
            address.locked_until,
        )

    def _delay(self, login: CountedKey, address: CountedKey) -> float:
        s = self._settings
        scaled_address = (address.failures - 1) * s.login_max_failures // s.address_max_failures
        return delay_for(max(login.failures - 1, scaled_address))

    async def _retry_after(self, pool: asyncpg.Pool, keys: list[str]) -> int:
        seconds: int | None = await pool.fetchval(_RETRY_AFTER, keys)
        return seconds if seconds is not None else self._settings.lockout_seconds

    async def _purge_now_and_then(self, pool: asyncpg.Pool) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_INTERVAL_SECONDS
        await pool.execute(_PURGE, float(self._settings.failure_window_seconds))


def _counted(row: asyncpg.Record) -> CountedKey:
    return CountedKey(
        key=row["key"],
        failures=row["failures"],
        window_started=row["window_started"],
        locked_until=row["locked_until"],
    )


def retry_after_header(seconds: int) -> dict[str, str]:
    """The Retry-After header of a refused attempt."""
    return {"Retry-After": str(max(1, seconds))}
