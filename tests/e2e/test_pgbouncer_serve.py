"""`school-gateway serve` behind a real PgBouncer in transaction mode, configured only by
its environment (issue 15): ready, sign-in, a read and a logout through two server
connections, the change feed's cursor on the direct URL; and the refusals an operator
meets at start, each in one line: transaction pooling without DATABASE_DIRECT_URL,
sessions without the gateway's statement timeout, and PgBouncer without the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.generate import SeedSummary
from gateway.core.settings import Settings
from tests.support.cli_process import run_command
from tests.support.environment import TODAY
from tests.support.password_signin import PLANTED_PASSWORD, PlantedStudent
from tests.support.pgbouncer import (
    PgBouncer,
    gateway_pgbouncer,
    login_credentials,
)
from tests.support.serve_process import command_env, free_port, serving

VIEWER = {"query": "query Me { viewer { role } }"}
CURSOR = {"query": "query Now { diaryChanges { cursor } }"}


@pytest.fixture(scope="module")
def bouncer(database_url: str, settings: Settings, seeded: SeedSummary) -> Iterator[PgBouncer]:
    with gateway_pgbouncer(database_url, settings.statement_timeout_ms, pool_size=2) as running:
        yield running


def _env(
    bouncer: PgBouncer, database_url: str, tmp_path: Path, alias: str = "gateway"
) -> dict[str, str]:
    return command_env(
        bouncer.url(alias, *login_credentials(database_url)),
        tmp_path,
        SCHOOL_GATEWAY_DEV="1",
        SCHOOL_GATEWAY_TODAY=TODAY.isoformat(),
        SCHOOL_GATEWAY_DATABASE_POOLER="transaction",
        DATABASE_DIRECT_URL=database_url,
    )


def test_serve_through_pgbouncer(
    bouncer: PgBouncer, database_url: str, tmp_path: Path, planted: PlantedStudent
) -> None:
    port = free_port()
    with (
        serving(_env(bouncer, database_url, tmp_path), port),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        assert client.get("/readyz").status_code == 200
        signed_in = client.post(
            "/auth/login", json={"login": planted.login, "password": PLANTED_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        read = client.post("/graphql", json=VIEWER, headers=bearer)
        assert read.json() == {"data": {"viewer": {"role": "STUDENT"}}}, read.text
        cursor = client.post("/graphql", json=CURSOR, headers=bearer)
        assert cursor.json()["data"]["diaryChanges"]["cursor"], cursor.text
        assert client.post("/auth/logout", headers=bearer).status_code == 204
        after = client.post("/graphql", json=VIEWER, headers=bearer)
        assert after.status_code == 401, after.text


def test_transaction_pooling_without_a_direct_url_is_refused(
    bouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    env = _env(bouncer, database_url, tmp_path)
    del env["DATABASE_DIRECT_URL"]
    result = run_command(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "needs DATABASE_DIRECT_URL" in result.stderr


def test_sessions_without_the_statement_timeout_are_refused_at_start(
    bouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    env = _env(bouncer, database_url, tmp_path, alias="bare")
    result = run_command(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert 'ALTER ROLE "school_gateway" SET statement_timeout = 5000' in result.stderr
    assert "Traceback" not in result.stderr


def test_pgbouncer_without_the_setting_is_named_at_start(
    bouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    env = _env(bouncer, database_url, tmp_path)
    del env["SCHOOL_GATEWAY_DATABASE_POOLER"], env["DATABASE_DIRECT_URL"]
    result = run_command(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "unsupported startup parameter" in result.stderr
    assert "Set SCHOOL_GATEWAY_DATABASE_POOLER=transaction" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_superuser_direct_url_is_refused_at_start(
    bouncer: PgBouncer, database_url: str, owner_url: str, tmp_path: Path
) -> None:
    env = {**_env(bouncer, database_url, tmp_path), "DATABASE_DIRECT_URL": owner_url}
    result = run_command(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "DATABASE_DIRECT_URL: the database URL logs in as" in result.stderr
    assert "a superuser" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pgbouncer_direct_url_is_refused_at_start(
    bouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    env = _env(bouncer, database_url, tmp_path)
    env["DATABASE_DIRECT_URL"] = env["DATABASE_URL"]  # the PgBouncer DSN
    result = run_command(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "DATABASE_DIRECT_URL refused a startup parameter" in result.stderr
    assert "not to PgBouncer" in result.stderr
    assert "Traceback" not in result.stderr
