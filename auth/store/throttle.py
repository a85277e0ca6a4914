"""Throttling of password sign-in, across workers: slow guessing, never lock out others.

The state lives in gateway.sign_in_throttle, one row per key, changed by single atomic
statements, so every worker process of the gateway sees the same counters:

- `login:<login>` (case-folded): failures of the login from *untrusted* clients;
- `device:<nonce>`: failures of one device cookie (auth.signin.device_cookie): a client that
  signed in successfully with this login before;
- `address:<client address>`: failures from one address — it only ever *delays*;
- `esia:<client address>`: starts of ESIA sign-in (`count_esia_start`), per minute.

The rule (OWASP's device cookies; times are the database's `now()`):

- An attempt with a valid device cookie for its login is *trusted*: it is counted on
  its device key only. Any other attempt is counted on its login and its address.
- An attempt is *counted before the password is checked*: admitting it adds one to the
  failure counter of its keys. A check that succeeds gives the attempt back: the login's
  (or the device's) row is deleted — counter and lock reset — and the address's counter
  goes down by one. So parallel guesses cannot outrun a counter, and a worker that dies
  mid-check leaves the attempt counted as failed.
- Failures are counted in a fixed window of `failure_window_seconds` from the first;
  an attempt after the window has passed starts a new one.
- Locks: the attempt that brings a login's counter to `login_max_failures` (a device's
  to `device_max_failures`) locks that key for `lockout_seconds`. That attempt is still
  checked; if its password is right the lock it set is lifted. While a key is locked,
  attempts counted on it are refused with 429 SIGN_IN_LOCKED and `Retry-After`, and are
  not counted. A locked login refuses untrusted clients only: the login's own known
  browsers (trusted) go on; a locked device cookie refuses only itself.
- An address is never locked: its failures beyond `address_free_failures` in the window
  delay its untrusted attempts. The right password from a busy address still signs in.
- Progressive delay before the password check, `0.1 s * 2**(k-1)` capped at
  `max_delay_ms`, where k is the larger of the failures counted before the attempt on
  its login (or device) and the address's failures beyond its free allowance
  (untrusted attempts only). No such failures, no delay.
- Rows whose window and lock have both ended are deleted now and then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from gateway.core.auth_settings import AuthSettings

DELAY_STEP_SECONDS: Final = 0.1
PURGE_INTERVAL_SECONDS: Final = 300.0
ESIA_WINDOW_SECONDS: Final = 60.0
LOGIN_PREFIX: Final = "login:"
DEVICE_PREFIX: Final = "device:"
ADDRESS_PREFIX: Final = "address:"
ESIA_PREFIX: Final = "esia:"
MAX_KEY_LENGTH: Final = 200

# A key's window is over (or its lock has ended): the attempt starts a new window.
_FRESH = (
    "(t.window_started <= now() - make_interval(secs => $4)"
    " OR (t.locked_until IS NOT NULL AND t.locked_until <= now()))"
)
_COUNT = f"(CASE WHEN {_FRESH} THEN 1 ELSE t.failures + 1 END)"


def _limit(key: str) -> str:
    """The failures that lock `key` (SQL): logins $2, devices $3, NULL (never) otherwise."""
    return (
        f"(CASE WHEN {key} LIKE '{LOGIN_PREFIX}%' THEN $2::int"
        f" WHEN {key} LIKE '{DEVICE_PREFIX}%' THEN $3::int END)"
    )


# One statement: refuse if any key is locked; otherwise count the attempt on every key,
# locking a key whose counter reaches its limit. A row locked concurrently is not
# updated (and not returned): the caller treats a missing key as refused.
_ADMIT = f"""
WITH locked AS (
    SELECT max(t.locked_until) AS until
    FROM gateway.sign_in_throttle t
    WHERE t.key = ANY($1::text[]) AND t.locked_until > now()
      AND {_limit("t.key")} IS NOT NULL
), counted AS (
    INSERT INTO gateway.sign_in_throttle AS t (key, failures, window_started, locked_until)
    SELECT k.key, 1, now(),
           CASE WHEN {_limit("k.key")} <= 1 THEN now() + make_interval(secs => $5) END
    FROM unnest($1::text[]) AS k(key)
    WHERE (SELECT until FROM locked) IS NULL
    ON CONFLICT (key) DO UPDATE SET
        failures = {_COUNT},
        window_started = CASE WHEN {_FRESH} THEN now() ELSE t.window_started END,
        locked_until = CASE WHEN {_COUNT} >= {_limit("t.key")}
                            THEN now() + make_interval(secs => $5) END
    WHERE t.locked_until IS NULL OR t.locked_until <= now() OR {_limit("t.key")} IS NULL
    RETURNING t.key, t.failures, t.window_started
)
SELECT c.key, c.failures, c.window_started, NULL::int AS retry_after
FROM counted c
UNION ALL
SELECT NULL, NULL, NULL, greatest(ceil(extract(epoch FROM l.until - now())), 1)::int
FROM locked l WHERE l.until IS NOT NULL
"""

# The seconds until the latest lock of these keys ends (after a lost race).
_RETRY_AFTER = """
SELECT greatest(ceil(extract(epoch FROM max(locked_until) - now())), 1)::int
FROM gateway.sign_in_throttle WHERE key = ANY($1::text[]) AND locked_until > now()
"""

# The right password: reset the login or device key (counter and lock), give the
# attempt back to the address (in the window it was counted in).
_SUCCEEDED = """
WITH reset AS (
    DELETE FROM gateway.sign_in_throttle WHERE key = $1
)
UPDATE gateway.sign_in_throttle
SET failures = greatest(failures - 1, 0)
WHERE key = $2 AND window_started = $3
"""

# One more start in the key's current fixed window (a new window once it has passed);
# the count and the seconds until the window ends.
_COUNT_START = """
INSERT INTO gateway.sign_in_throttle AS t (key, failures, window_started)
VALUES ($1, 1, now())
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN t.window_started <= now() - make_interval(secs => $2)
                    THEN 1 ELSE t.failures + 1 END,
    window_started = CASE WHEN t.window_started <= now() - make_interval(secs => $2)
                          THEN now() ELSE t.window_started END
RETURNING t.failures,
          greatest(ceil(extract(epoch FROM
              t.window_started + make_interval(secs => $2) - now())), 1)::int AS retry_after
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


@dataclass(frozen=True, slots=True)
class Admission:
    """The throttle's answer to an attempt: refused (with Retry-After) or admitted.

    `reset_key` is the login's (untrusted) or the device's (trusted) key, reset when the
    password is right; `address` is the address row to give the attempt back to.
    """

    reset_key: str
    trusted: bool
    retry_after: int | None = None  # set when refused
    delay_seconds: float = 0.0
    address: CountedKey | None = None

    @property
    def allowed(self) -> bool:
        return self.retry_after is None


def login_key(login: str) -> str:
    """The throttle key of a login (case-folded: case variants share one counter)."""
    return (LOGIN_PREFIX + login.strip().casefold())[:MAX_KEY_LENGTH]


def device_key(nonce: str) -> str:
    """The throttle key of a device cookie (its nonce)."""
    return (DEVICE_PREFIX + nonce)[:MAX_KEY_LENGTH]


def address_key(address: str) -> str:
    """The throttle key of a client address."""
    return (ADDRESS_PREFIX + address)[:MAX_KEY_LENGTH]


def esia_key(address: str) -> str:
    """The key counting ESIA sign-in starts of a client address."""
    return (ESIA_PREFIX + address)[:MAX_KEY_LENGTH]


def delay_for(failures_before: int, cap_seconds: float) -> float:
    """The wait before checking an attempt that follows `failures_before` failures."""
    if failures_before <= 0:
        return 0.0
    return min(DELAY_STEP_SECONDS * 2.0 ** min(failures_before - 1, 16), cap_seconds)


class SignInThrottle:
    """Admits or refuses password attempts and ESIA starts; one per application."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._next_purge = 0.0

    async def admit(
        self, pool: asyncpg.Pool, *, login: str, address: str, device: str | None = None
    ) -> Admission:
        """Count an attempt (see the module docstring), or refuse it while it is locked.

        `device` is the nonce of a valid device cookie for this login, if any.
        """
        await self._purge_now_and_then(pool)
        if device is not None:
            keys = [device_key(device)]
        else:
            keys = [login_key(login), address_key(address)]
        s = self._settings
        rows = await pool.fetch(
            _ADMIT,
            keys,
            s.login_max_failures,
            s.device_max_failures,
            float(s.failure_window_seconds),
            float(s.lockout_seconds),
        )
        counted = {row["key"]: _counted(row) for row in rows if row["key"] is not None}
        refused = [row["retry_after"] for row in rows if row["retry_after"] is not None]
        trusted = device is not None
        if refused or len(counted) < len(keys):
            retry_after = refused[0] if refused else await self._retry_after(pool, keys)
            return Admission(keys[0], trusted, retry_after=retry_after)
        address_row = None if trusted else counted[keys[1]]
        return Admission(
            keys[0],
            trusted,
            delay_seconds=self._delay(counted[keys[0]], address_row),
            address=address_row,
        )

    async def succeeded(self, pool: asyncpg.Pool, admission: Admission) -> None:
        """The attempt's password was right: reset its login or device, release the address."""
        address = admission.address
        await pool.execute(
            _SUCCEEDED,
            admission.reset_key,
            None if address is None else address.key,
            None if address is None else address.window_started,
        )

    async def count_esia_start(self, pool: asyncpg.Pool, address: str) -> int | None:
        """Count a start of ESIA sign-in from `address`: None when allowed, else the
        seconds until this minute's window ends (Retry-After)."""
        await self._purge_now_and_then(pool)
        row = await pool.fetchrow(_COUNT_START, esia_key(address), ESIA_WINDOW_SECONDS)
        if row["failures"] <= self._settings.esia_starts_per_minute:
            return None
        retry_after: int = row["retry_after"]
        return retry_after

    def _delay(self, own: CountedKey, address: CountedKey | None) -> float:
        """The wait before the check: by the login's or device's earlier failures and the
        address's failures beyond its allowance, whichever is more, capped."""
        s = self._settings
        failures_before = own.failures - 1
        if address is not None:
            excess = address.failures - 1 - s.address_free_failures
            failures_before = max(failures_before, excess)
        return delay_for(failures_before, s.max_delay_ms / 1000)

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
        key=row["key"], failures=row["failures"], window_started=row["window_started"]
    )


def retry_after_header(seconds: int) -> dict[str, str]:
    """The Retry-After header of a refused attempt."""
    return {"Retry-After": str(max(1, seconds))}
