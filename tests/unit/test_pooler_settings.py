"""SCHOOL_GATEWAY_DATABASE_POOLER and DATABASE_DIRECT_URL: read, validated, and what each
mode sends (the real PgBouncer is tests/db/test_pgbouncer.py's)."""

from __future__ import annotations

import pytest

from gateway.core.pooler import (
    PoolerSetupError,
    refuse_role_switch,
    startup_settings,
    statement_cache_options,
)
from gateway.core.pooler_settings import PoolerSettings
from gateway.core.settings import Settings, SettingsError

DEV = {"SCHOOL_GATEWAY_DEV": "1"}
DIRECT = "postgresql://school_gateway:secret@db.example:5432/school"
WANTED = {
    "jit": "off",
    "statement_timeout": "5000",
    "application_name": "school-gateway",
}


def test_by_default_connections_are_direct_with_the_statement_cache() -> None:
    pooler = Settings.from_env(DEV).pooler
    assert pooler == PoolerSettings(mode="none", direct_url=None)
    assert statement_cache_options(pooler) == {}
    assert startup_settings(pooler, WANTED) == WANTED


def test_transaction_pooling_turns_the_statement_cache_off() -> None:
    env = {**DEV, "SCHOOL_GATEWAY_DATABASE_POOLER": "Transaction", "DATABASE_DIRECT_URL": DIRECT}
    pooler = Settings.from_env(env).pooler
    assert (pooler.mode, pooler.direct_url) == ("transaction", DIRECT)
    assert statement_cache_options(pooler) == {"statement_cache_size": 0}
    assert startup_settings(pooler, WANTED) == {"application_name": "school-gateway"}


def test_session_pooling_keeps_the_cache_but_sends_no_session_settings() -> None:
    pooler = Settings.from_env({**DEV, "SCHOOL_GATEWAY_DATABASE_POOLER": "session"}).pooler
    assert statement_cache_options(pooler) == {}
    assert startup_settings(pooler, WANTED) == {"application_name": "school-gateway"}


def test_transaction_pooling_needs_a_direct_url_for_subscriptions() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**DEV, "SCHOOL_GATEWAY_DATABASE_POOLER": "transaction"})
    assert "DATABASE_DIRECT_URL" in str(caught.value)
    assert "SCHOOL_GATEWAY_SUBSCRIPTIONS=0" in str(caught.value)
    without_feed = {
        **DEV,
        "SCHOOL_GATEWAY_DATABASE_POOLER": "transaction",
        "SCHOOL_GATEWAY_SUBSCRIPTIONS": "0",
    }
    assert Settings.from_env(without_feed).pooler.mode == "transaction"


def test_the_statement_cache_can_be_set_either_way() -> None:
    """On through PgBouncer >= 1.21's prepared statements; off directly (to measure it)."""
    env = {
        **DEV,
        "SCHOOL_GATEWAY_DATABASE_POOLER": "transaction",
        "DATABASE_DIRECT_URL": DIRECT,
        "SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE": "1",
    }
    assert statement_cache_options(Settings.from_env(env).pooler) == {}
    direct = Settings.from_env({**DEV, "SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE": "0"}).pooler
    assert statement_cache_options(direct) == {"statement_cache_size": 0}
    assert startup_settings(direct, WANTED) == WANTED


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SCHOOL_GATEWAY_DATABASE_POOLER", "pgbouncer", "must be none, session or transaction"),
        ("DATABASE_DIRECT_URL", "mysql://x/y", "DATABASE_DIRECT_URL must start with"),
        ("SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE", "maybe", "must be a boolean"),
    ],
)
def test_bad_values_are_refused(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**DEV, variable: value})
    assert message in str(caught.value)


def test_no_role_switch_through_a_pooler() -> None:
    pooled = PoolerSettings(mode="session")
    with pytest.raises(PoolerSetupError, match="must log in as the gateway's role"):
        startup_settings(pooled, {**WANTED, "role": "school_gateway"})
    with pytest.raises(PoolerSetupError):
        refuse_role_switch(pooled, "school_gateway")
    refuse_role_switch(pooled, None)
    refuse_role_switch(PoolerSettings(), "school_gateway")  # directly: SET ROLE as before
