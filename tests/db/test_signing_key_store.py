"""The shared key set in the real database (auth.store.signing_keys, auth.signing_keys):
the rotation's minimum age at its edges, a table that lost its current key, and the
periodic reload surviving an unexpected error. Every test starts and ends with an empty
gateway.signing_keys (key "0" current), which the rest of the run expects."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from auth.signing_keys import KeyReloader
from auth.store.signing_keys import RotationTooSoon, rotate
from gateway.cli.signing_keys import min_key_age
from gateway.core.settings import Settings
from gateway.core.signing_keys import LEGACY_KID, SigningKeys, SigningKeySettings

_AGE = """
UPDATE gateway.signing_keys SET created_at = now() - make_interval(secs => $1)
WHERE state = 'current'
"""
_STATES = "SELECT kid, state FROM gateway.signing_keys ORDER BY kid"


@pytest.fixture
async def empty_keys(owner_conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    await owner_conn.execute("DELETE FROM gateway.signing_keys")
    try:
        yield owner_conn
    finally:
        await owner_conn.execute("DELETE FROM gateway.signing_keys")


async def test_a_rotation_is_refused_just_below_the_minimum_age_and_done_just_above(
    empty_keys: asyncpg.Connection, settings: Settings
) -> None:
    conn = empty_keys
    minimum = min_key_age(settings).total_seconds()
    first = await rotate(conn, min_age_s=minimum, force=False)  # "0" becomes previous
    assert (first.previous, first.retired) == (LEGACY_KID, None)
    await conn.execute(_AGE, minimum - 2)
    with pytest.raises(RotationTooSoon) as refused:
        await rotate(conn, min_age_s=minimum, force=False)
    assert (refused.value.current, refused.value.retiring) == (first.current, LEGACY_KID)
    await conn.execute(_AGE, minimum + 2)
    second = await rotate(conn, min_age_s=minimum, force=False)
    assert (second.previous, second.retired) == (first.current, LEGACY_KID)


async def test_a_table_without_a_current_key_is_repaired_not_refilled_with_key_zero(
    empty_keys: asyncpg.Connection,
) -> None:
    conn = empty_keys
    previous = "a" * 16
    await conn.execute(
        "INSERT INTO gateway.signing_keys (kid, state, retired_at) "
        "VALUES ($1, 'previous', NULL), ('0', 'retired', now())",
        previous,
    )
    rotation = await rotate(conn, min_age_s=3600, force=False)
    assert (rotation.previous, rotation.retired) == (previous, None)
    states = {row["kid"]: row["state"] for row in await conn.fetch(_STATES)}
    assert states == {rotation.current: "current", previous: "previous", "0": "retired"}

    # Only retired keys: the new key becomes current, nothing is previous.
    await conn.execute("UPDATE gateway.signing_keys SET state = 'retired', retired_at = now()")
    again = await rotate(conn, min_age_s=3600, force=False)
    assert (again.previous, again.retired) == (None, None)
    states = {row["kid"]: row["state"] for row in await conn.fetch(_STATES)}
    assert states[again.current] == "current" and states["0"] == "retired"
    assert list(states.values()).count("current") == 1


async def test_the_periodic_reload_survives_an_unexpected_error(
    empty_keys: asyncpg.Connection,
    settings: Settings,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = SigningKeys(SigningKeySettings(reload_s=1, unknown_kid_s=1))
    own = dataclasses.replace(settings, signing_keys=keys)
    calls = 0

    def flaky_pool() -> asyncpg.Pool:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first periodic reload meets a bug
            raise RuntimeError("a bug in the reload")
        return pool

    reloader = KeyReloader(own, flaky_pool)
    with caplog.at_level(logging.ERROR, logger="auth.signing_keys"):
        await reloader.start()
        try:
            rotation = await rotate(empty_keys, min_age_s=0, force=False)
            deadline = asyncio.get_running_loop().time() + 5
            while keys.keys.current != rotation.current:
                assert asyncio.get_running_loop().time() < deadline, "no reload after the bug"
                await asyncio.sleep(0.1)
        finally:
            await reloader.close()
    assert calls >= 3
    failed = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert failed and failed[0].exc_info is not None  # logged with its traceback
