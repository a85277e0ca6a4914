"""The in-memory side of the signing keys: derivation, the key set, its settings, and how
often unknown kids make a process read the key set (gateway.core.signing_keys)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import timedelta

import pytest

from gateway.cli.signing_keys import min_key_age
from gateway.core.outage import DatabaseUnavailable
from gateway.core.settings import Settings, SettingsError
from gateway.core.signing_keys import (
    LEGACY_KID,
    KeyRows,
    KeySet,
    KeyState,
    NoCurrentKeyError,
    SigningKeys,
    SigningKeySettings,
    derive_key,
    is_kid,
    new_kid,
)

SECRET = "s" * 40


def test_key_zero_is_the_secret_and_other_keys_are_distinct_derivations() -> None:
    first, second = new_kid(), new_kid()
    assert is_kid(first) and is_kid(second) and first != second
    assert derive_key(SECRET, LEGACY_KID) == SECRET.encode()
    assert len(derive_key(SECRET, first)) == 32
    assert derive_key(SECRET, first) == derive_key(SECRET, first)
    assert derive_key(SECRET, first) != derive_key(SECRET, second)
    assert derive_key(SECRET, first) != derive_key(SECRET + "x", first)
    for bad in ("", "00", "ABCDEF0123456789", "0123456789abcdef0", 0, None):
        assert not is_kid(bad), bad


def test_the_key_set_of_rows() -> None:
    assert KeySet.from_rows([]) == KeySet(current=LEGACY_KID)
    keys = KeySet.from_rows(
        [("b" * 16, "current"), ("a" * 16, "previous"), ("0", "retired"), ("c" * 16, "retired")]
    )
    assert keys.state_of("b" * 16) is KeyState.CURRENT
    assert keys.state_of("a" * 16) is KeyState.PREVIOUS
    assert keys.state_of("0") is KeyState.RETIRED
    assert keys.state_of("d" * 16) is None
    assert keys.accepts("a" * 16) and not keys.accepts("0")


def test_reload_settings_are_read_and_checked() -> None:
    env = {"SCHOOL_GATEWAY_DEV": "1", "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S": "5"}
    assert Settings.from_env(env).signing_keys.settings == SigningKeySettings(5, 1)
    for bad in (
        {"SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S": "0"},
        {"SCHOOL_GATEWAY_SIGNING_KEYS_UNKNOWN_KID_S": "x"},
        {
            "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S": "2",
            "SCHOOL_GATEWAY_SIGNING_KEYS_UNKNOWN_KID_S": "3",
        },
    ):
        with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_SIGNING_KEYS_"):
            Settings.from_env({"SCHOOL_GATEWAY_DEV": "1", **bad})


async def test_unknown_kids_share_a_reload_per_interval() -> None:
    reads: list[float] = []
    rows: KeyRows = [("e" * 16, "current"), ("0", "previous")]

    async def load() -> KeyRows:
        reads.append(time.monotonic())
        await asyncio.sleep(0.01)
        return rows

    keys = SigningKeys(SigningKeySettings(reload_s=30, unknown_kid_s=1))
    await asyncio.gather(*(keys.learn(new_kid(), load) for _ in range(100)))
    assert len(reads) == 2 and reads[1] - reads[0] >= 0.99
    assert keys.keys.current == "e" * 16
    await keys.learn("e" * 16, load)  # known: no read
    await keys.ensure_loaded(load)  # loaded already: no read
    assert len(reads) == 2


async def test_requests_sharing_a_failed_reload_fail_as_the_database_away() -> None:
    reads = 0

    async def load() -> KeyRows:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        raise ConnectionRefusedError("the database is away")

    keys = SigningKeys(SigningKeySettings(reload_s=30, unknown_kid_s=1))
    results = await asyncio.gather(
        *(keys.learn(new_kid(), load) for _ in range(5)), return_exceptions=True
    )
    # The first request's read, then one a second later for those that came during it;
    # the rest relied on that one and fail as the database away, not as a bad token.
    assert reads == 2
    kinds = [type(result) for result in results]
    assert kinds == [ConnectionRefusedError] * 2 + [DatabaseUnavailable] * 3
    assert keys.keys == KeySet() and not keys.loaded


def test_rows_without_a_current_key_keep_the_retired_keys_refused() -> None:
    # The previous key signs in its stead (an error logged at reload); "0" and the
    # retired kid stay refused — not the default set, which would accept "0" again.
    keys = KeySet.from_rows([("a" * 16, "previous"), ("0", "retired"), ("c" * 16, "retired")])
    assert keys.current == "a" * 16 and keys.stand_in and keys.previous is None
    assert keys.accepts("a" * 16)
    assert not keys.accepts(LEGACY_KID) and keys.state_of(LEGACY_KID) is KeyState.RETIRED
    assert not keys.accepts("c" * 16)
    # Only retired keys: nothing signs, nothing verifies.
    none = KeySet.from_rows([("0", "retired"), ("c" * 16, "retired")])
    assert none.current is None and not none.accepts(LEGACY_KID)
    with pytest.raises(NoCurrentKeyError, match="rotate-signing-key"):
        none.signing_kid()


async def test_a_process_without_a_signing_key_does_not_start_and_a_running_one_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows: KeyRows = [("0", "retired")]

    async def load() -> KeyRows:
        return rows

    fresh = SigningKeys()
    with pytest.raises(NoCurrentKeyError):
        await fresh.reload(load)
    assert not fresh.loaded

    running = SigningKeys()
    rows = [("e" * 16, "current"), ("0", "previous")]
    await running.reload(load)
    rows = [("0", "retired"), ("e" * 16, "retired")]
    with caplog.at_level(logging.ERROR, logger="gateway.core.signing_keys"):
        await running.reload(load)
    assert running.keys.current is None and not running.accepts("e" * 16)
    assert "no current and no previous key" in caplog.text
    caplog.clear()
    rows = [("e" * 16, "previous"), ("0", "retired")]
    with caplog.at_level(logging.ERROR, logger="gateway.core.signing_keys"):
        await running.reload(load)
    assert running.keys.current == "e" * 16 and not running.accepts(LEGACY_KID)
    assert "has no current key; the previous key" in caplog.text


def test_the_minimum_key_age_is_the_longest_lifetime_and_two_reload_intervals() -> None:
    settings = Settings.from_env(
        {
            "SCHOOL_GATEWAY_DEV": "1",
            "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S": "30",
        }
    )
    longest = max(
        settings.auth.session_ttl_seconds,
        settings.auth.access_ttl_seconds,
        settings.client_token_ttl_seconds,
    )
    assert min_key_age(settings) == timedelta(seconds=longest + 60)
    shorter = dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, session_ttl_seconds=100)
    )
    assert min_key_age(shorter) == timedelta(
        seconds=max(100, settings.auth.access_ttl_seconds, settings.client_token_ttl_seconds) + 60
    )
