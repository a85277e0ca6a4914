"""Proxy headers are believed only from SCHOOL_GATEWAY_TRUSTED_PROXIES (issue 9, item 10).

uvicorn's own default trusts `X-Forwarded-For` from 127.0.0.1 (or from whatever
FORWARDED_ALLOW_IPS names), so a local client could choose the address that throttling
and the recorded sign-in events see. Checked through a real uvicorn server configured as
`serve` configures it: the address recorded for a failed sign-in.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway.core.settings import Settings, SettingsError
from gateway.http.serving import gateway_config, proxy_options
from tests.support.environment import gateway_env
from tests.support.live_server import live_server
from tests.support.recorder_fixtures import sign_in_rows

SPOOFED = "203.0.113.7"
_HEX_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


async def _recorded_address(
    env: dict[str, str], pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> str | None:
    """Fail a sign-in through a live server with a forged X-Forwarded-For; the address
    the sign-in event recorded."""
    # Letters only: a login with a run of ten digits is stored masked (auth.store.audit), and
    # ten random hex characters are all digits about once in a hundred runs.
    login = "proxy." + uuid.uuid4().hex[:10].translate(_HEX_TO_LETTERS)
    async with live_server(env, pool) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                "/auth/login",
                json={"login": login, "password": "not-the-password"},
                headers={"Accept": "application/json", "X-Forwarded-For": SPOOFED},
            )
        assert response.status_code == 401, response.text
        await server.app.state.auth.recorder.flush()
    (row,) = await sign_in_rows(owner_conn, login)
    address: str | None = row["client_address"]
    return address


async def test_forwarded_for_from_localhost_is_ignored_by_default(
    database_url: str,
    data_dir: Path,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvicorn reads FORWARDED_ALLOW_IPS when it is not told: it must not re-open the door.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    env = gateway_env(database_url, data_dir)
    assert await _recorded_address(env, pool, owner_conn) == "127.0.0.1"


async def test_forwarded_for_is_honoured_from_a_configured_proxy(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    env = {**gateway_env(database_url, data_dir), "SCHOOL_GATEWAY_TRUSTED_PROXIES": "127.0.0.1"}
    assert await _recorded_address(env, pool, owner_conn) == SPOOFED


async def test_forwarded_for_from_a_proxy_in_a_trusted_network(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    env = {
        **gateway_env(database_url, data_dir),
        "SCHOOL_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.0/8",
    }
    assert await _recorded_address(env, pool, owner_conn) == SPOOFED


def test_trusted_proxies_setting(settings: Settings) -> None:
    assert settings.trusted_proxies == ()
    parsed = Settings.from_env(
        {
            "SCHOOL_GATEWAY_DEV": "1",
            "SCHOOL_GATEWAY_TRUSTED_PROXIES": " 10.1.2.3/8, 192.0.2.1 ,::1,fd00::/8",
        }
    )
    assert parsed.trusted_proxies == ("10.0.0.0/8", "192.0.2.1", "::1", "fd00::/8")
    with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_TRUSTED_PROXIES"):
        Settings.from_env({"SCHOOL_GATEWAY_DEV": "1", "SCHOOL_GATEWAY_TRUSTED_PROXIES": "proxy"})


def test_uvicorn_config_ignores_forwarded_allow_ips_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    config = gateway_config("gateway.app:app_from_env", settings, factory=True)
    assert config.proxy_headers is False and config.forwarded_allow_ips == []
    assert proxy_options(("192.0.2.1",)) == {
        "proxy_headers": True,
        "forwarded_allow_ips": ["192.0.2.1"],
    }
