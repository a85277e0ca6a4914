"""Shared fixtures: one real PostgreSQL per test run, seeded once at scale 1.

The server is the embedded one (started in a temporary folder) unless
DATABASE_OWNER_URL (or DATABASE_URL) names the owner of an external test database.
As in production, the gateway (`database_url`, `settings`, `pool`, `app`) connects as
its least-privilege login role; only seeding and `owner_conn` (expected values) use the
owner's DSN (`owner_url`). Tests read the generated data; a test that writes restores
what it changed.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from auth.store.accounts import ensure_demo_account
from fixtures.demo import demo_account
from fixtures.generate import SeedSummary, seed
from gateway.app import create_app
from gateway.core import embedded
from gateway.core.db import create_pool
from gateway.core.embedded import EmbeddedServer
from gateway.core.settings import Settings
from gateway.migrations.location import embedded_login, prepare_login
from tests.support.environment import (
    GATEWAY_ROLE,
    SCALE,
    SEED,
    TODAY,
    GraphQL,
    gateway_env,
)
from tests.support.planted import post_graphql

# The developer's own OpenTelemetry settings would trace the suite's apps and processes to
# their collector (and break the tracing tests): the suite runs without them.
for _name in [name for name in os.environ if name.startswith("OTEL_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="school-gateway-test-") as folder:
        yield Path(folder)


def _external_owner_url() -> str | None:
    return os.environ.get("DATABASE_OWNER_URL") or os.environ.get("DATABASE_URL") or None


@pytest.fixture(scope="session")
def database_server(data_dir: Path) -> Iterator[EmbeddedServer | None]:
    """The embedded server of this run (None with an external test database)."""
    if _external_owner_url():
        yield None
        return
    server = embedded.start(data_dir / "embedded", ephemeral=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def owner_url(database_server: EmbeddedServer | None) -> str:
    """The schema owner's DSN (a superuser): seeding and expected values only."""
    external = _external_owner_url()
    if database_server is None:
        assert external is not None
        return external
    return database_server.url


@pytest.fixture(scope="session")
async def database_url(owner_url: str, database_server: EmbeddedServer | None) -> str:
    """The gateway's login DSN (DATABASE_URL in production), its role made ready the way
    the product does it: on the embedded server with the password kept in its data
    folder (what `serve` and `demo` there use too), elsewhere with a password of this
    run."""
    if database_server is not None:
        return await embedded_login(database_server, GATEWAY_ROLE)
    return await prepare_login(owner_url, GATEWAY_ROLE, secrets.token_urlsafe(24))


@pytest.fixture(scope="session")
def settings(database_url: str, owner_url: str, data_dir: Path) -> Settings:
    settings = Settings.from_env(gateway_env(database_url, data_dir, owner_url))
    assert settings.gateway_role == GATEWAY_ROLE
    return settings


@pytest.fixture(scope="session")
async def seeded(owner_url: str, settings: Settings) -> SeedSummary:
    """The scale-1 data set, generated once per run (as the owner)."""
    return await seed(
        owner_url,
        scale=SCALE,
        seed=SEED,
        today=TODAY,
        gateway_role=settings.gateway_role,
    )


@pytest.fixture(scope="session")
async def owner_conn(owner_url: str, seeded: SeedSummary) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection for computing expected values independently of the gateway."""
    conn = await asyncpg.connect(owner_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def pool(
    database_url: str, settings: Settings, seeded: SeedSummary
) -> AsyncIterator[asyncpg.Pool]:
    """The gateway's pool, as its login role (like `serve`)."""
    pool = await create_pool(database_url, settings)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def app(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Starlette]:
    application = create_app(settings, pool=pool)
    yield application
    # What the lifespan would do (ASGITransport does not run it): write what the
    # recorder still holds, close the analytics pool and its background refresh.
    await application.state.auth.recorder.close()
    await application.state.services.close()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


@pytest.fixture(scope="session")
async def tokens(settings: Settings, pool: asyncpg.Pool) -> dict[str, str]:
    """A bearer token for every demo account, by key (each of its own DEV_TOKEN API session)."""
    from auth.store.sessions import issue_dev_token
    from fixtures.demo import DEMO_ACCOUNTS

    result: dict[str, str] = {}
    for account in DEMO_ACCOUNTS:
        account_id = await ensure_demo_account(pool, demo_account(account.key))
        result[account.key] = await issue_dev_token(pool, settings, account_id)
    return result


@pytest.fixture
def gql(client: httpx.AsyncClient, tokens: dict[str, str]) -> GraphQL:
    """POST a GraphQL operation as a demo account (or anonymously) and return the JSON."""

    async def run(
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        account: str | None = None,
        expect_status: int | None = 200,
    ) -> dict[str, Any]:
        token = tokens[account] if account is not None else None
        return await post_graphql(client, token, query, variables, expect_status=expect_status)

    return run
