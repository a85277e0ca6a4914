"""DATABASE_REPLICA_URL (the read replica, issue 15): read with every other setting,
refused when it is no PostgreSQL DSN, absent by default (every read on DATABASE_URL)."""

from __future__ import annotations

import pytest

from gateway.core.settings import Settings, SettingsError

DEV = {"SCHOOL_GATEWAY_DEV": "1"}
REPLICA = "postgresql://school_gateway:secret@replica.example:5432/school"


def test_the_replica_dsn_is_read() -> None:
    assert Settings.from_env({**DEV, "DATABASE_REPLICA_URL": REPLICA}).database_replica_url == (
        REPLICA
    )


@pytest.mark.parametrize("value", [None, ""])
def test_without_it_there_is_no_replica(value: str | None) -> None:
    env = DEV if value is None else {**DEV, "DATABASE_REPLICA_URL": value}
    assert Settings.from_env(env).database_replica_url is None


def test_a_dsn_of_another_kind_is_refused_in_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**DEV, "DATABASE_REPLICA_URL": "mysql://replica/school"})
    assert str(caught.value) == "DATABASE_REPLICA_URL must start with postgresql:// or postgres://"
