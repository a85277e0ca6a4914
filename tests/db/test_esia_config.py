"""ESIA configuration: not configured, and the development provider's production guard."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway.app import create_app
from gateway.core.errors import ErrorCode
from gateway.core.settings import Settings, SettingsError
from tests.support.environment import gateway_env
from tests.support.esia_flow import BROWSER, assert_page, last_event_id


async def test_without_esia_settings_sign_in_is_not_configured(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    settings = Settings.from_env(
        {**gateway_env(database_url, data_dir), "SCHOOL_GATEWAY_DEV_IDP": "0"}
    )
    assert settings.auth.esia_url is None
    app = create_app(settings, pool=pool)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        since = await last_event_id(owner_conn)
        response = await c.get("/auth/esia/login", headers=BROWSER)
        assert_page(response, ErrorCode.ESIA_NOT_CONFIGURED, 503)
        await app.state.auth.recorder.flush()
        outcomes = await owner_conn.fetch(
            "SELECT method, outcome FROM gateway.sign_in_events WHERE id > $1", since
        )
        assert [tuple(row) for row in outcomes] == [("ESIA", "ESIA_NOT_CONFIGURED")]
        # Without the development provider its routes do not exist.
        for path in ("/dev-idp/aas/oauth2/v2/ac", "/dev-idp/jwks", "/dev-idp/aas/oauth2/v3/te"):
            assert (await c.get(path)).status_code == 404


async def test_dev_idp_cannot_be_enabled_outside_dev_mode(
    database_url: str, pool: asyncpg.Pool
) -> None:
    production = {
        "DATABASE_URL": database_url,
        "SCHOOL_GATEWAY_JWT_SECRET": "x" * 48,
        "SCHOOL_GATEWAY_PUBLIC_URL": "https://dnevnik.example.ru",
    }
    with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_DEV_IDP is only allowed in dev"):
        Settings.from_env({**production, "SCHOOL_GATEWAY_DEV_IDP": "1"})
    settings = Settings.from_env(production)
    assert not settings.auth.dev_idp and settings.auth.esia_url is None
    transport = httpx.ASGITransport(app=create_app(settings, pool=pool))
    async with httpx.AsyncClient(transport=transport, base_url=settings.auth.public_url) as c:
        assert (await c.get("/dev-idp/aas/oauth2/v2/ac")).status_code == 404
        assert (await c.get("/dev-idp/jwks")).status_code == 404
    with pytest.raises(SettingsError, match="signer"):
        Settings.from_env({**production, "SCHOOL_GATEWAY_ESIA_URL": "https://esia.gosuslugi.ru"})


def test_allowed_origins_must_be_http_urls(database_url: str) -> None:
    env = {
        "DATABASE_URL": database_url,
        "SCHOOL_GATEWAY_JWT_SECRET": "x" * 48,
        "SCHOOL_GATEWAY_PUBLIC_URL": "https://Dnevnik.example.ru",
    }
    with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_ALLOWED_ORIGINS"):
        Settings.from_env({**env, "SCHOOL_GATEWAY_ALLOWED_ORIGINS": "app.example.ru"})
    settings = Settings.from_env(
        {**env, "SCHOOL_GATEWAY_ALLOWED_ORIGINS": " https://App.example.ru/path , "}
    )
    assert settings.auth.allowed_origins == {
        "https://dnevnik.example.ru",
        "https://app.example.ru",
    }
