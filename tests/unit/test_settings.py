"""Settings: defaults, and a clear message naming the variable for every bad value."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateway.cli.common import load_settings
from gateway.core.settings import PROJECT_ROOT, Settings, SettingsError

SECRET = "s" * 40


def _env(**overrides: str) -> dict[str, str]:
    return {"SCHOOL_GATEWAY_JWT_SECRET": SECRET, **overrides}


def test_defaults_outside_dev_mode() -> None:
    settings = Settings.from_env(_env())
    assert settings.database_url is None
    assert settings.data_dir == PROJECT_ROOT / ".data"
    assert settings.gateway_role == "school_gateway"
    assert settings.dev_mode is False
    assert settings.graphiql is False  # follows dev mode
    assert settings.introspection is True
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.jwt_ttl_seconds == 900  # short-lived access tokens (issue 4)
    assert (settings.max_query_depth, settings.max_aliases, settings.max_tokens) == (12, 30, 2000)
    assert settings.max_diary_days == 31
    assert settings.statement_timeout_ms == 5000
    assert (settings.pool_min_size, settings.pool_max_size) == (2, 10)
    assert settings.log_level == "INFO"
    assert settings.today_override is None
    assert settings.today() == date.today()
    assert settings.response_cache is True
    assert settings.audit_linger_ms == 50
    assert settings.server == "fast"


def test_dev_mode_generates_a_key_and_turns_graphiql_on() -> None:
    settings = Settings.from_env({"SCHOOL_GATEWAY_DEV": "1"})
    assert settings.dev_mode and settings.graphiql
    assert len(settings.jwt_secret) >= 32


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        _env(
            DATABASE_URL="postgresql://u@db.example/school",
            SCHOOL_GATEWAY_DATA_DIR="/tmp/gw-data",
            SCHOOL_GATEWAY_DB_ROLE="diary_reader",
            SCHOOL_GATEWAY_DEV="yes",
            SCHOOL_GATEWAY_JWT_TTL="600",
            SCHOOL_GATEWAY_HOST="0.0.0.0",
            SCHOOL_GATEWAY_PORT="9000",
            SCHOOL_GATEWAY_GRAPHIQL="off",
            SCHOOL_GATEWAY_INTROSPECTION="false",
            SCHOOL_GATEWAY_MAX_DEPTH="8",
            SCHOOL_GATEWAY_MAX_ALIASES="5",
            SCHOOL_GATEWAY_MAX_TOKENS="500",
            SCHOOL_GATEWAY_MAX_DIARY_DAYS="14",
            SCHOOL_GATEWAY_STATEMENT_TIMEOUT_MS="1500",
            SCHOOL_GATEWAY_POOL_MIN="1",
            SCHOOL_GATEWAY_POOL_MAX="4",
            SCHOOL_GATEWAY_LOG_LEVEL="debug",
            SCHOOL_GATEWAY_TODAY="2026-11-27",
            SCHOOL_GATEWAY_RESPONSE_CACHE="0",
            SCHOOL_GATEWAY_AUDIT_LINGER_MS="0",
            SCHOOL_GATEWAY_SERVER="asyncio",
        )
    )
    assert settings.database_url == "postgresql://u@db.example/school"
    assert settings.data_dir == Path("/tmp/gw-data")
    assert settings.gateway_role == "diary_reader"
    assert settings.dev_mode and not settings.graphiql and not settings.introspection
    assert settings.jwt_secret == SECRET
    assert (settings.jwt_ttl_seconds, settings.host, settings.port) == (600, "0.0.0.0", 9000)
    assert (settings.max_query_depth, settings.max_aliases, settings.max_tokens) == (8, 5, 500)
    assert (settings.max_diary_days, settings.statement_timeout_ms) == (14, 1500)
    assert (settings.pool_min_size, settings.pool_max_size) == (1, 4)
    assert settings.log_level == "DEBUG"
    assert settings.today() == date(2026, 11, 27)
    assert settings.response_cache is False
    assert settings.audit_linger_ms == 0
    assert settings.server == "asyncio"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SCHOOL_GATEWAY_JWT_SECRET is required outside dev mode"),
        ({"SCHOOL_GATEWAY_JWT_SECRET": "short"}, "SCHOOL_GATEWAY_JWT_SECRET must be at least 32"),
        (_env(DATABASE_URL="mysql://x/y"), "DATABASE_URL must start with postgresql://"),
        (_env(SCHOOL_GATEWAY_DB_ROLE="Robert'); DROP"), "SCHOOL_GATEWAY_DB_ROLE must be"),
        (_env(SCHOOL_GATEWAY_DEV="maybe"), "SCHOOL_GATEWAY_DEV must be a boolean"),
        (_env(SCHOOL_GATEWAY_PORT="http"), "SCHOOL_GATEWAY_PORT must be an integer"),
        (_env(SCHOOL_GATEWAY_PORT="70000"), "SCHOOL_GATEWAY_PORT must be between 1 and 65535"),
        (_env(SCHOOL_GATEWAY_MAX_DEPTH="1"), "SCHOOL_GATEWAY_MAX_DEPTH must be between 2 and 50"),
        (_env(SCHOOL_GATEWAY_JWT_TTL="5"), "SCHOOL_GATEWAY_JWT_TTL must be between 60"),
        (
            _env(SCHOOL_GATEWAY_POOL_MIN="5", SCHOOL_GATEWAY_POOL_MAX="2"),
            "SCHOOL_GATEWAY_POOL_MIN must not exceed SCHOOL_GATEWAY_POOL_MAX",
        ),
        (_env(SCHOOL_GATEWAY_LOG_LEVEL="loud"), "SCHOOL_GATEWAY_LOG_LEVEL must be DEBUG"),
        (
            _env(SCHOOL_GATEWAY_AUDIT_LINGER_MS="5000"),
            "SCHOOL_GATEWAY_AUDIT_LINGER_MS must be between 0 and 1000, got 5000",
        ),
        (
            _env(SCHOOL_GATEWAY_AUDIT_LINGER_MS="50ms"),
            "SCHOOL_GATEWAY_AUDIT_LINGER_MS must be an integer",
        ),
        (_env(SCHOOL_GATEWAY_TODAY="2026-11-27"), "SCHOOL_GATEWAY_TODAY is only allowed in dev"),
        (
            _env(SCHOOL_GATEWAY_DEV="1", SCHOOL_GATEWAY_TODAY="27.11.2026"),
            "SCHOOL_GATEWAY_TODAY must be YYYY-MM-DD",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_commands_that_sign_nothing_need_no_key() -> None:
    settings = load_settings("export-schema", env={})
    assert not settings.dev_mode
    with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_JWT_SECRET is required"):
        load_settings("serve", env={})


def test_dev_key_is_kept_in_the_data_folder(tmp_path: Path) -> None:
    env = {"SCHOOL_GATEWAY_DEV": "1", "SCHOOL_GATEWAY_DATA_DIR": str(tmp_path)}
    first = load_settings("dev-token", env=env)
    second = load_settings("serve", env=env)
    assert first.jwt_secret == second.jwt_secret
    key_file = tmp_path / "dev-jwt-secret"
    assert key_file.read_text() == first.jwt_secret
    assert key_file.stat().st_mode & 0o077 == 0


def test_demo_forces_dev_mode(tmp_path: Path) -> None:
    settings = load_settings(
        "demo", env={"SCHOOL_GATEWAY_DEV": "0", "SCHOOL_GATEWAY_DATA_DIR": str(tmp_path)}
    )
    assert settings.dev_mode and settings.graphiql
