"""The shared key set in gateway.signing_keys (gateway/migrations/gateway_signing_keys.sql):
read it, list it, rotate it. Only kids, states and dates: keys are derived
(gateway.core.signing_keys).

Rotation (`rotate`) retires the previous key, makes the current one previous and a new
random kid current, in one transaction holding a lock that serialises rotations. It is
refused (`RotationTooSoon`) while the current key is younger than `min_age_s` — the
longest token lifetime plus twice the nodes' reload interval — unless forced, because
retiring the previous key then refuses tokens it signed that have not expired yet:

- a token signed with key K was issued before the rotation that made K previous, or up to
  two reload intervals after it: a node that had not reloaded yet still signed with K,
  and a node whose reload failed (a database blip) waits a whole interval to try again;
- so it expires at the latest `longest lifetime + 2 × reload interval` after the key that
  replaced K became current; K may be retired once that key is that old. (A node that
  cannot read the table for longer mostly cannot sign either: sign-in and refresh need
  the database.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from gateway.core.signing_keys import LEGACY_KID, KeyRows, KeyState, new_kid

# The newest keys are enough: older retired kids only ever come with long-expired tokens.
LOADED_KEYS: Final = 100

# Current, previous, then the retired ones, newest first.
_ORDER = "ORDER BY array_position(ARRAY['current', 'previous'], state), created_at DESC, kid"

_LOAD = f"SELECT kid, state FROM gateway.signing_keys {_ORDER} LIMIT {LOADED_KEYS}"

_LIST = f"SELECT kid, state, created_at, retired_at FROM gateway.signing_keys {_ORDER}"

# Readers (plain SELECT) are not blocked; a second rotation waits for the first.
_LOCK = "LOCK TABLE gateway.signing_keys IN SHARE ROW EXCLUSIVE MODE"

_LIVE = """
SELECT kid, state, created_at, now() - created_at AS age, now() AS now
FROM gateway.signing_keys WHERE state <> 'retired'
"""

_EMPTY = "SELECT NOT EXISTS (SELECT FROM gateway.signing_keys)"

_RETIRE = """
UPDATE gateway.signing_keys SET state = 'retired', retired_at = now() WHERE state = 'previous'
"""
_DEMOTE = "UPDATE gateway.signing_keys SET state = 'previous' WHERE state = 'current'"
_INSERT = "INSERT INTO gateway.signing_keys (kid, state) VALUES ($1, $2) RETURNING created_at"


@dataclass(frozen=True, slots=True)
class SigningKeyRow:
    """One key as listed: never any key material."""

    kid: str
    state: KeyState
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation did: the new current kid, the kid that became previous and the one
    retired (None when there was no previous key). `previous` is None only when the table
    had neither a current nor a previous key (see `rotate`)."""

    current: str
    previous: str | None
    retired: str | None
    created_at: datetime


class RotationTooSoon(Exception):
    """The current key is younger than the rotation's minimum age: rotating would retire
    a key whose tokens may still be valid."""

    def __init__(self, *, current: str, retiring: str, age: timedelta, allowed_at: datetime):
        super().__init__(f"current key {current} is only {age} old")
        self.current = current
        self.retiring = retiring
        self.age = age
        self.allowed_at = allowed_at


async def load_key_rows(pool: asyncpg.Pool | asyncpg.Connection) -> KeyRows:
    """(kid, state) of the current, the previous and the newest retired keys (`LOADED_KEYS`
    in all): one statement."""
    rows = await pool.fetch(_LOAD)
    return [(str(row["kid"]), str(row["state"])) for row in rows]


async def list_keys(conn: asyncpg.Connection) -> list[SigningKeyRow]:
    """Every key: the current one, the previous one, then the retired ones, newest first."""
    return [
        SigningKeyRow(row["kid"], KeyState(row["state"]), row["created_at"], row["retired_at"])
        for row in await conn.fetch(_LIST)
    ]


async def rotate(conn: asyncpg.Connection, *, min_age_s: float, force: bool) -> Rotation:
    """Make a new random key current (see the module); `RotationTooSoon` unless the
    current key is at least `min_age_s` old, there is no previous key, or `force`.

    Key "0" is written (as current, then demoted) only into an empty table: the secret
    itself has been signing. A table with keys but no current one (edited by hand) is
    repaired: the new key becomes current and the previous key, which the nodes sign
    with meanwhile (gateway.core.signing_keys.KeySet.from_rows), stays previous."""
    async with conn.transaction():
        await conn.execute(_LOCK)
        live = {row["state"]: row for row in await conn.fetch(_LIVE)}
        current, previous = live.get(KeyState.CURRENT.value), live.get(KeyState.PREVIOUS.value)
        if current is None:
            return await _repair_or_start(conn, previous)
        minimum = timedelta(seconds=min_age_s)
        if previous is not None and current["age"] < minimum and not force:
            raise RotationTooSoon(
                current=current["kid"],
                retiring=previous["kid"],
                age=current["age"],
                allowed_at=current["created_at"] + minimum,
            )
        await conn.execute(_RETIRE)
        return await _new_current(
            conn, str(current["kid"]), None if previous is None else str(previous["kid"])
        )


async def _repair_or_start(conn: asyncpg.Connection, previous: asyncpg.Record | None) -> Rotation:
    """A rotation without a current key: the first one (an empty table: "0" becomes
    previous) or the repair of a table that lost its current key (nothing retires)."""
    if await conn.fetchval(_EMPTY):
        await conn.execute(_INSERT, LEGACY_KID, KeyState.CURRENT.value)
        return await _new_current(conn, LEGACY_KID, None)
    kid = new_kid()
    created_at = await conn.fetchval(_INSERT, kid, KeyState.CURRENT.value)
    return Rotation(
        current=kid,
        previous=None if previous is None else str(previous["kid"]),
        retired=None,
        created_at=created_at,
    )


async def _new_current(conn: asyncpg.Connection, current: str, retired: str | None) -> Rotation:
    """The current key `current` becomes previous and a new random kid current."""
    await conn.execute(_DEMOTE)
    kid = new_kid()
    created_at = await conn.fetchval(_INSERT, kid, KeyState.CURRENT.value)
    return Rotation(current=kid, previous=current, retired=retired, created_at=created_at)
