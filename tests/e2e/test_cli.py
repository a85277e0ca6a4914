"""The `school-gateway` command, run as a real process against the test database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from auth.tokens import verify_token
from fixtures.demo import DEMO_ACCOUNTS
from fixtures.generate import SeedSummary
from gateway.cli.common import apply_listen_flags
from gateway.cli.main import build_parser
from gateway.core.db_roles import with_credentials
from gateway.core.embedded import EmbeddedServer
from gateway.core.settings import Settings
from gateway.execution.schema import export_sdl
from gateway.migrations.location import embedded_login
from tests.support.cli_process import COMMAND, run_command
from tests.support.environment import SEED, TODAY
from tests.support.serve_process import command_env as _env
from tests.support.serve_process import free_port as _free_port
from tests.support.serve_process import serving as _serving

START_TIMEOUT_S = 30


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_command(args, env)


def test_serve_answers_real_http_requests(
    database_url: str, tmp_path: Path, tokens: dict[str, str], seeded: SeedSummary
) -> None:
    port = _free_port()
    env = _env(
        database_url, tmp_path, SCHOOL_GATEWAY_DEV="1", SCHOOL_GATEWAY_TODAY=TODAY.isoformat()
    )
    with _serving(env, port) as process:
        base = f"http://127.0.0.1:{port}"
        parent = next(a for a in DEMO_ACCOUNTS if a.key == "parent-two-schools")
        response = httpx.post(
            f"{base}/graphql",
            json={"query": "query Kids { myChildren { fullName school { name } } }"},
            headers={
                "Authorization": f"Bearer {tokens[parent.key]}",
                "Accept": "application/graphql-response+json",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == (
            "application/graphql-response+json; charset=utf-8"
        )
        children = response.json()["data"]["myChildren"]
        names = {child["fullName"] for child in children}
        assert names == {f"{c.last_name} {c.first_name} {c.patronymic}" for c in parent.children}
        assert len({child["school"]["name"] for child in children}) == 2
        get = httpx.get(f"{base}/graphql", params={"query": "mutation { __typename }"}, timeout=10)
        assert get.status_code == 405
        garbage = httpx.post(
            f"{base}/graphql",
            json={"query": "{ viewer { role } }"},
            headers={"Authorization": "Bearer nonsense"},
            timeout=10,
        )
        assert garbage.status_code == 401
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "POST /graphql 200" in stderr and "op=Kids" in stderr
    assert "GET /graphql 405" in stderr and "POST /graphql 401" in stderr
    assert "mutation" not in stderr  # the query string is never logged
    for secret in (tokens[parent.key], parent.snils, parent.phone, "Traceback"):
        assert secret and secret not in stderr


def test_dev_token_is_refused_outside_dev_mode(database_url: str, tmp_path: Path) -> None:
    result = _run(["dev-token", "parent-one-school"], _env(database_url, tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "school-gateway: dev-token is refused outside dev mode (set SCHOOL_GATEWAY_DEV=1)"
    )


async def test_dev_token_in_dev_mode(
    database_url: str, tmp_path: Path, settings: Settings, owner_conn: asyncpg.Connection
) -> None:
    result = _run(
        ["dev-token", "student-young"], _env(database_url, tmp_path, SCHOOL_GATEWAY_DEV="1")
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    claims = verify_token(settings, token)
    # Bound to its own revocable session (an API session started by DEV_TOKEN).
    session = await owner_conn.fetchrow(
        "SELECT account_id::text, kind, method, revoked_at FROM gateway.sessions "
        "WHERE id = $1::uuid",
        claims.session_id,
    )
    assert session is not None
    assert dict(session) == {
        "account_id": claims.account_id,
        "kind": "API",
        "method": "DEV_TOKEN",
        "revoked_at": None,
    }


def test_dev_token_for_an_unknown_account(database_url: str, tmp_path: Path) -> None:
    env = _env(database_url, tmp_path, SCHOOL_GATEWAY_DEV="1")
    result = _run(["dev-token", "nobody"], env)
    assert result.returncode == 2
    assert "unknown demo account 'nobody'" in result.stderr
    assert "parent-one-school" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_schema_prints_the_sdl(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCHOOL_")}
    env["SCHOOL_GATEWAY_DATA_DIR"] = str(tmp_path)
    result = _run(["export-schema"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == export_sdl()
    assert "type Query {" in result.stdout
    assert "myChildren" in result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written, no database touched


def test_accounts_json(database_url: str, tmp_path: Path, seeded: SeedSummary) -> None:
    result = _run(["accounts", "--json"], _env(database_url, tmp_path))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["key"] for row in rows] == [account.key for account in DEMO_ACCOUNTS]
    by_key = {row["key"]: row for row in rows}
    assert by_key["parent-two-schools"]["role"] == "PARENT"
    assert len(by_key["parent-two-schools"]["children"]) == 2


def test_accounts_text(database_url: str, tmp_path: Path, seeded: SeedSummary) -> None:
    result = _run(["accounts"], _env(database_url, tmp_path))
    assert result.returncode == 0, result.stderr
    for account in DEMO_ACCOUNTS:
        assert account.key in result.stdout
        assert account.full_name in result.stdout


async def test_seed_refuses_to_replace_data_without_yes(
    database_url: str, owner_url: str, tmp_path: Path, owner_conn: asyncpg.Connection
) -> None:
    before = await owner_conn.fetchrow(
        "SELECT scale, seed, today, seeded_at FROM gateway.seed_info"
    )
    process = await asyncio.create_subprocess_exec(
        COMMAND,
        *("seed", "--scale", "1", "--seed", "99", "--today", "2026-10-01"),
        env=_env(database_url, tmp_path, DATABASE_OWNER_URL=owner_url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 2
    assert "already holds school data" in stderr.decode()
    assert "pass --yes to replace it" in stderr.decode()
    after = await owner_conn.fetchrow("SELECT scale, seed, today, seeded_at FROM gateway.seed_info")
    assert after == before  # the data set is untouched
    assert after["seed"] == SEED


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SCHOOL_GATEWAY_PORT": "eighty"}, "SCHOOL_GATEWAY_PORT must be an integer"),
        ({"SCHOOL_GATEWAY_JWT_SECRET": "short"}, "SCHOOL_GATEWAY_JWT_SECRET must be at least"),
        ({"DATABASE_URL": "mysql://db/school"}, "DATABASE_URL must start with postgresql://"),
        (
            {"DATABASE_OWNER_URL": "mysql://db/school"},
            "DATABASE_OWNER_URL must start with postgresql://",
        ),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    database_url: str, tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    result = _run(["serve"], _env(database_url, tmp_path, **overrides))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_seed_date_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(["seed", "--today", "27.11.2026"], {"PATH": os.environ.get("PATH", "")})
    assert result.returncode == 2
    assert "expected YYYY-MM-DD" in result.stderr


def test_python_dash_m_gateway(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for command in ("serve", "demo", "seed", "accounts", "export-schema", "dev-token"):
        assert command in result.stdout


async def test_migrate_brings_an_older_database_up_to_date(
    owner_url: str, tmp_path: Path, seeded: SeedSummary, owner_conn: asyncpg.Connection
) -> None:
    # An older database: one of the gateway's tables (and so its grants) is missing.
    await owner_conn.execute("DROP TABLE gateway.esia_requests")
    # DATABASE_URL alone still names the owner for `migrate`, as before.
    result = _run(["migrate"], _env(owner_url, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert await owner_conn.fetchval(
        "SELECT has_table_privilege('school_gateway', 'gateway.esia_requests', 'INSERT')"
    )
    # Idempotent: a second run on an up-to-date database changes nothing and succeeds.
    assert _run(["migrate"], _env(owner_url, tmp_path)).returncode == 0


def test_port_flag_moves_the_public_url_and_the_esia_redirect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SCHOOL_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("SCHOOL_GATEWAY_PUBLIC_URL", raising=False)
    args = build_parser().parse_args(["demo", "--port", "8123"])
    apply_listen_flags(args)
    auth = Settings.from_env({**os.environ, "SCHOOL_GATEWAY_DEV": "1"}).auth
    assert auth.public_url == "http://127.0.0.1:8123"
    assert auth.redirect_uri == "http://127.0.0.1:8123/auth/esia/callback"
    assert auth.esia_url == "http://127.0.0.1:8123/dev-idp"
    assert "http://127.0.0.1:8123" in auth.allowed_origins


# --- the gateway's login role (issue 9, item 13) ---------------------------------------

MIGRATED_ROLE = "school_gateway_migrated"
_ROLE_STATE = """
SELECT rolcanlogin AS login, rolsuper OR rolcreaterole OR rolcreatedb AS powers,
       (SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m
        JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid) AS member_of,
       has_table_privilege(r.rolname, 'diary_api.students', 'SELECT') AS reads_contract,
       has_table_privilege(r.rolname, 'school.students', 'SELECT') AS reads_school,
       has_table_privilege(r.rolname, 'gateway.access_audit', 'UPDATE') AS rewrites_audit
FROM pg_roles r WHERE rolname = $1
"""


async def _whom(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        user: str = await conn.fetchval("SELECT session_user")
    finally:
        await conn.close()
    return user


async def test_migrate_creates_the_login_role_and_repairs_an_old_one(
    owner_url: str, tmp_path: Path, seeded: SeedSummary, owner_conn: asyncpg.Connection
) -> None:
    """A role of another name: `migrate` creates it with DATABASE_URL's password, turns an
    older NOLOGIN role with extra powers and a membership into the login role, and is
    idempotent."""
    login = with_credentials(owner_url, MIGRATED_ROLE, "migrated-Password-1")
    env = _env(login, tmp_path, DATABASE_OWNER_URL=owner_url, SCHOOL_GATEWAY_DB_ROLE=MIGRATED_ROLE)
    expected = {
        "login": True,
        "powers": False,
        "member_of": None,
        "reads_contract": True,
        "reads_school": False,
        "rewrites_audit": False,
    }
    try:
        assert await owner_conn.fetchrow(_ROLE_STATE, MIGRATED_ROLE) is None
        result = _run(["migrate"], env)
        assert result.returncode == 0, result.stderr
        assert f"login role {MIGRATED_ROLE}" in result.stdout
        assert dict(await owner_conn.fetchrow(_ROLE_STATE, MIGRATED_ROLE)) == expected
        assert await _whom(login) == MIGRATED_ROLE  # DATABASE_URL's password was set
        # What an older version left: NOLOGIN; and what nobody should give it.
        await owner_conn.execute(f"ALTER ROLE {MIGRATED_ROLE} NOLOGIN CREATEDB PASSWORD NULL")
        await owner_conn.execute(f"GRANT pg_read_all_data TO {MIGRATED_ROLE}")
        for _ in range(2):  # repaired, then idempotent
            result = _run(["migrate"], env)
            assert result.returncode == 0, result.stderr
            assert dict(await owner_conn.fetchrow(_ROLE_STATE, MIGRATED_ROLE)) == expected
        assert await _whom(login) == MIGRATED_ROLE
    finally:
        if await owner_conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", MIGRATED_ROLE):
            await owner_conn.execute(f"DROP OWNED BY {MIGRATED_ROLE}")
            await owner_conn.execute(f"DROP ROLE {MIGRATED_ROLE}")


def test_migrate_with_the_gateway_login_only_asks_for_the_owner(
    database_url: str, tmp_path: Path
) -> None:
    result = _run(["migrate"], _env(database_url, tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_OWNER_URL" in lines[0], result.stderr


async def test_serve_refuses_a_superuser_dsn(
    owner_url: str, tmp_path: Path, owner_conn: asyncpg.Connection
) -> None:
    if not await owner_conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        pytest.skip("the external test database's owner is not a superuser")
    result = _run(["serve", "--port", str(_free_port())], _env(owner_url, tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "superuser" in lines[0] and "Traceback" not in result.stderr


async def _gateway_backends(conn: asyncpg.Connection, since: datetime) -> list[str]:
    rows = await conn.fetch(
        "SELECT usename FROM pg_stat_activity WHERE application_name = 'school-gateway' "
        "AND backend_start >= $1",
        since,
    )
    return [row["usename"] for row in rows]


async def test_serve_connects_as_the_login_role(
    database_url: str, tmp_path: Path, seeded: SeedSummary, owner_conn: asyncpg.Connection
) -> None:
    since = await owner_conn.fetchval("SELECT clock_timestamp()")
    env = _env(database_url, tmp_path, SCHOOL_GATEWAY_POOL_MIN="2")
    with _serving(env, _free_port()):
        users = await _gateway_backends(owner_conn, since)
    print(f"serve's connections: {users}")
    assert users and set(users) == {"school_gateway"}


async def test_demo_on_an_old_data_folder_connects_as_the_login_role(
    database_server: EmbeddedServer | None,
    tmp_path: Path,
    seeded: SeedSummary,
    owner_conn: asyncpg.Connection,
) -> None:
    """`demo` on the embedded server's data folder, whose role is as an older version
    left it (NOLOGIN, no password): it makes the login role and serves as it."""
    if database_server is None:
        pytest.skip("the demo's embedded server only")
    await owner_conn.execute("ALTER ROLE school_gateway NOLOGIN PASSWORD NULL")
    since = await owner_conn.fetchval("SELECT clock_timestamp()")
    env = _env("", tmp_path, SCHOOL_GATEWAY_TODAY=TODAY.isoformat(), SCHOOL_GATEWAY_POOL_MIN="2")
    del env["DATABASE_URL"]
    env["SCHOOL_GATEWAY_DATA_DIR"] = str(database_server.data_dir)
    try:
        with _serving(env, _free_port(), command="demo"):
            users = await _gateway_backends(owner_conn, since)
    finally:  # whatever happened, the suite's pool can open connections again
        await embedded_login(database_server, "school_gateway")
    print(f"demo's connections: {users}")
    assert users and set(users) == {"school_gateway"}
    assert await owner_conn.fetchval(
        "SELECT rolcanlogin AND rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
        "WHERE rolname = 'school_gateway'"
    )


def test_serve_stops_at_once_with_event_streams_open(
    database_url: str, tmp_path: Path, tokens: dict[str, str], seeded: SeedSummary
) -> None:
    """An open subscription stream does not keep `serve` from stopping: its connection
    is closed at shutdown (uvicorn would otherwise wait for it for ever)."""
    port = _free_port()
    env = _env(
        database_url, tmp_path, SCHOOL_GATEWAY_DEV="1", SCHOOL_GATEWAY_TODAY=TODAY.isoformat()
    )
    with _serving(env, port) as process, httpx.Client(timeout=10) as client:
        headers = {
            "Authorization": f"Bearer {tokens['parent-two-schools']}",
            "Accept": "text/event-stream",
        }
        query = {"query": "subscription Feed { diaryEvents { cursor } }"}
        with client.stream(
            "POST", f"http://127.0.0.1:{port}/graphql", json=query, headers=headers
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=15)
            stopped_after = time.monotonic() - started
            with contextlib.suppress(httpx.HTTPError):
                for _ in stream.iter_bytes():
                    pass
    # uvicorn ends a clean shutdown on SIGTERM by raising the signal again.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert stopped_after < 5, stderr
    assert "Application shutdown complete" in stderr and "Traceback" not in stderr


def test_serve_logs_json_lines_with_the_request_id(
    database_url: str, tmp_path: Path, tokens: dict[str, str], seeded: SeedSummary
) -> None:
    """SCHOOL_GATEWAY_LOG_FORMAT=json: every stderr line is one JSON object; the request
    line carries the client's X-Request-Id (sent back), or one of the gateway's; personal
    data is masked as in text lines."""
    port = _free_port()
    env = _env(
        database_url,
        tmp_path,
        SCHOOL_GATEWAY_DEV="1",
        SCHOOL_GATEWAY_TODAY=TODAY.isoformat(),
        SCHOOL_GATEWAY_LOG_FORMAT="json",
    )
    parent = next(a for a in DEMO_ACCOUNTS if a.key == "parent-two-schools")
    with _serving(env, port) as process:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {tokens[parent.key]}", "X-Request-Id": "trace-42.a"}
        mine = httpx.post(
            f"{base}/graphql",
            json={"query": "query Kids { myChildren { id } }"},
            headers=headers,
            timeout=10,
        )
        assert mine.headers["x-request-id"] == "trace-42.a"
        theirs = httpx.get(f"{base}/livez", timeout=10)
        generated = theirs.headers["x-request-id"]
        assert len(generated) == 32 and generated.isalpha()
        snils_path = httpx.get(f"{base}/{parent.snils}", timeout=10)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "gateway.access"]
    kids = next(line for line in access if line.get("operation") == "Kids")
    assert (kids["request_id"], kids["method"], kids["path"], kids["status"]) == (
        "trace-42.a",
        "POST",
        "/graphql",
        200,
    )
    assert isinstance(kids["duration_ms"], float)
    assert any(line.get("request_id") == generated and line["path"] == "/livez" for line in access)
    assert snils_path.headers["x-request-id"]
    assert parent.snils and parent.snils not in stderr and tokens[parent.key] not in stderr
