"""Machine clients end to end over HTTP: the CLI registers, POST /oauth/token issues
(client credentials), GraphQL serves the client's role; revocation, scopes and expiry."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import strawberry
from starlette.applications import Starlette
from strawberry.permission import PermissionExtension

from auth.permissions import HasScope, IsAuthenticated
from auth.requests import authenticate
from auth.store.clients import create_client, hash_secret
from auth.tokens import CLIENT, verify_token
from auth.viewer import (
    SCOPE_DIARY,
    SCOPE_REGION_ANALYTICS,
    SCOPE_SCHOOL_DASHBOARD,
    SCOPE_SCHOOL_SIGN_INS,
    Role,
    Viewer,
)
from gateway.core.db import counting_statements
from gateway.core.settings import Settings
from tests.support.cli_process import run_school_gateway
from tests.support.planted import error_codes, post_graphql
from tests.support.statements import application_statements
from tests.support.tokens import sign_token, token_claims

TOKEN_URL = "/oauth/token"
FORM = {"grant_type": "client_credentials"}
VIEWER = "{ viewer { id role displayName } }"
CHILDREN = "{ myChildren { id fullName } }"


def run_cli(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_school_gateway(database_url, data_dir, "clients", *args)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def request_token(
    client: httpx.AsyncClient, client_id: str, secret: str, **form: str
) -> httpx.Response:
    return await client.post(TOKEN_URL, data={**FORM, **form}, headers=basic(client_id, secret))


@pytest.fixture(scope="module")
async def school_ids(owner_conn: asyncpg.Connection) -> list[int]:
    return [
        row["id"] for row in await owner_conn.fetch("SELECT id FROM school.schools ORDER BY id")
    ]


async def _events(app: Starlette, owner_conn: asyncpg.Connection, login: str) -> list[str]:
    await app.state.auth.recorder.flush()
    rows = await owner_conn.fetch(
        "SELECT outcome FROM gateway.sign_in_events WHERE method = 'CLIENT' AND login = $1 "
        "ORDER BY id",
        login,
    )
    return [row["outcome"] for row in rows]


# --- the whole flow -------------------------------------------------------------------


async def test_cli_created_client_gets_a_token_and_a_school_admin_viewer(
    database_url: str,
    data_dir: Path,
    school_ids: list[int],
    client: httpx.AsyncClient,
    app: Starlette,
    owner_conn: asyncpg.Connection,
    settings: Settings,
) -> None:
    school = school_ids[0]
    created = run_cli(
        database_url, data_dir, "create", "--name", "Школа: дашборд", "--role", "SCHOOL_ADMIN",
        "--school", str(school), "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    registered = json.loads(created.stdout)
    client_id, secret = registered["client_id"], registered["client_secret"]
    assert registered["role"] == "SCHOOL_ADMIN" and registered["school_ids"] == [school]
    assert registered["scopes"] == sorted([SCOPE_SCHOOL_DASHBOARD, SCOPE_SCHOOL_SIGN_INS])
    # Only the hash is stored; the listing never shows a secret.
    stored = await owner_conn.fetchval(
        "SELECT secret_hash FROM gateway.service_clients WHERE id = $1::uuid", client_id
    )
    assert bytes(stored) == hash_secret(secret)
    listed = run_cli(database_url, data_dir, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout and "secret" not in listed.stdout
    assert client_id in {item["client_id"] for item in json.loads(listed.stdout)}

    response = await request_token(client, client_id, secret)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.client_token_ttl_seconds == 300
    assert body["scope"] == f"{SCOPE_SCHOOL_DASHBOARD} {SCOPE_SCHOOL_SIGN_INS}"
    assert "refresh_token" not in body
    claims = verify_token(settings, body["access_token"], typ=CLIENT)
    assert claims.account_id == client_id
    assert claims.expires_at - time.time() <= 300

    payload = await post_graphql(client, body["access_token"], VIEWER)
    assert payload == {
        "data": {
            "viewer": {"id": client_id, "role": "SCHOOL_ADMIN", "displayName": "Школа: дашборд"}
        }
    }
    # A client never reads a child's diary: FORBIDDEN, no data, no access-audit row.
    children = await post_graphql(client, body["access_token"], CHILDREN)
    assert error_codes(children) == ["FORBIDDEN"] and children["data"] is None
    await app.state.auth.recorder.flush()
    audited = await owner_conn.fetchval(
        "SELECT count(*) FROM gateway.access_audit WHERE account_id = $1::uuid", client_id
    )
    assert audited == 0
    assert await _events(app, owner_conn, client_id) == ["SIGNED_IN"]

    revoked = run_cli(database_url, data_dir, "revoke", client_id)
    assert revoked.returncode == 0, revoked.stderr
    # The token issued before stops working on its next request; no new token is issued.
    after = await client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert after.status_code == 401
    assert error_codes(after.json()) == ["CLIENT_REVOKED"]
    assert "invalid_token" in after.headers["www-authenticate"]
    refused = await request_token(client, client_id, secret)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert await _events(app, owner_conn, client_id) == ["SIGNED_IN", "CLIENT_REVOKED"]
    listed_after = json.loads(run_cli(database_url, data_dir, "list", "--json").stdout)
    assert next(c for c in listed_after if c["client_id"] == client_id)["revoked_at"]
    text = run_cli(database_url, data_dir, "list").stdout
    line = next(line for line in text.splitlines() if line.startswith(client_id))
    assert "revoked" in line and "Школа: дашборд" in line and secret not in text


async def test_cli_refuses_bad_registrations(
    database_url: str, data_dir: Path, school_ids: list[int]
) -> None:
    cases = [
        ("--role", "SCHOOL_ADMIN"),  # no school
        ("--role", "REGIONAL_ANALYST", "--school", str(school_ids[0])),
        ("--role", "REGIONAL_ANALYST", "--scope", SCOPE_SCHOOL_DASHBOARD),
        ("--role", "PARENT"),
        ("--role", "SCHOOL_ADMIN", "--school", "999999"),  # no such school
    ]
    for args in cases:
        result = run_cli(database_url, data_dir, "create", "--name", "x", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "client_secret" not in result.stdout
    unknown = run_cli(database_url, data_dir, "revoke", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "no client" in unknown.stderr


# --- the token endpoint's errors (RFC 6749 §5.2) ---------------------------------------


@pytest.fixture
async def analyst(pool: asyncpg.Pool) -> tuple[str, str]:
    created = await create_client(pool, name="Аналитика региона", role=Role.REGIONAL_ANALYST)
    return created.client.client_id, created.secret


async def test_wrong_or_unknown_credentials_are_invalid_client(
    client: httpx.AsyncClient,
    analyst: tuple[str, str],
    app: Starlette,
    owner_conn: asyncpg.Connection,
) -> None:
    client_id, secret = analyst
    for who, what in ((client_id, secret + "x"), (client_id, ""), (str(uuid.uuid4()), secret)):
        response = await request_token(client, who, what)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Basic ")
        body = response.json()
        assert body["error"] == "invalid_client"
        assert body["code"] == "INVALID_CLIENT"
        assert body["message"] == "Неверный идентификатор или секрет клиента."
        assert "access_token" not in body
    # client_secret_post with a wrong secret, and no credentials at all
    for form in ({"client_id": client_id, "client_secret": "nope"}, {}):
        response = await client.post(TOKEN_URL, data={**FORM, **form})
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert (await _events(app, owner_conn, client_id))[:2] == ["INVALID_CLIENT", "INVALID_CLIENT"]


async def test_client_secret_post_and_an_analyst_viewer(
    client: httpx.AsyncClient, analyst: tuple[str, str], pool: asyncpg.Pool, settings: Settings
) -> None:
    client_id, secret = analyst
    response = await client.post(
        TOKEN_URL, data={**FORM, "client_id": client_id, "client_secret": secret}
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    payload = await post_graphql(client, token, VIEWER)
    assert payload["data"]["viewer"]["role"] == "REGIONAL_ANALYST"
    viewer = await authenticate(f"Bearer {token}", settings, pool)
    assert viewer is not None and viewer.is_client
    assert viewer.school_ids == frozenset() and viewer.student_ids == frozenset()
    assert viewer.scopes == frozenset({SCOPE_REGION_ANALYTICS})
    # The analyst asking for a child by id: FORBIDDEN, no data.
    student = await post_graphql(client, token, '{ student(id: "1") { fullName } }')
    assert error_codes(student) == ["FORBIDDEN"] and student["data"] == {"student": None}


async def test_grant_type_scope_and_body_errors(
    client: httpx.AsyncClient, analyst: tuple[str, str]
) -> None:
    client_id, secret = analyst
    cases: list[tuple[dict[str, str], int, str, str]] = [
        ({"grant_type": "password"}, 400, "unsupported_grant_type", "UNSUPPORTED_GRANT_TYPE"),
        ({"scope": SCOPE_SCHOOL_DASHBOARD}, 400, "invalid_scope", "INVALID_SCOPE"),
        (
            {"scope": f"{SCOPE_REGION_ANALYTICS} {SCOPE_DIARY}"},
            400,
            "invalid_scope",
            "INVALID_SCOPE",
        ),
        ({"scope": " "}, 400, "invalid_scope", "INVALID_SCOPE"),
    ]
    for form, status, error, code in cases:
        response = await request_token(client, client_id, secret, **form)
        assert response.status_code == status, (form, response.text)
        body = response.json()
        assert (body["error"], body["code"]) == (error, code), form
        assert body["message"] and "access_token" not in body
    repeated = await client.post(
        TOKEN_URL,
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={**basic(client_id, secret), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"
    as_json = await client.post(TOKEN_URL, json=FORM, headers=basic(client_id, secret))
    assert as_json.status_code == 400 and as_json.json()["code"] == "BAD_REQUEST"


# --- scopes ----------------------------------------------------------------------------


@pytest.fixture
async def dashboard(pool: asyncpg.Pool, school_ids: list[int]) -> tuple[str, str]:
    created = await create_client(
        pool, name="Дашборд двух школ", role=Role.SCHOOL_ADMIN, school_ids=school_ids[:2]
    )
    return created.client.client_id, created.secret


def _one() -> int:
    return 1


@strawberry.type
class _ScopedQuery:
    sign_ins: int = strawberry.field(
        resolver=_one,
        extensions=[PermissionExtension([IsAuthenticated(), HasScope(SCOPE_SCHOOL_SIGN_INS)])],
    )


_SCOPED = strawberry.Schema(query=_ScopedQuery)


async def _scoped_codes(viewer: Viewer | None) -> list[str]:
    result = await _SCOPED.execute("{ signIns }", context_value=_Context(viewer))
    return [str((error.extensions or {}).get("code")) for error in result.errors or ()]


class _Context:
    def __init__(self, viewer: Viewer | None) -> None:
        self.viewer = viewer


async def test_scope_narrowing_and_has_scope(
    client: httpx.AsyncClient,
    dashboard: tuple[str, str],
    pool: asyncpg.Pool,
    settings: Settings,
    school_ids: list[int],
) -> None:
    client_id, secret = dashboard
    full = (await request_token(client, client_id, secret)).json()
    narrow = (await request_token(client, client_id, secret, scope=SCOPE_SCHOOL_DASHBOARD)).json()
    assert narrow["scope"] == SCOPE_SCHOOL_DASHBOARD
    full_viewer = await authenticate(f"Bearer {full['access_token']}", settings, pool)
    narrow_viewer = await authenticate(f"Bearer {narrow['access_token']}", settings, pool)
    assert full_viewer is not None and narrow_viewer is not None
    assert full_viewer.school_ids == frozenset(school_ids[:2])
    assert narrow_viewer.scopes == frozenset({SCOPE_SCHOOL_DASHBOARD})
    assert await _scoped_codes(full_viewer) == []
    assert await _scoped_codes(narrow_viewer) == ["FORBIDDEN"]
    assert await _scoped_codes(None) == ["UNAUTHENTICATED"]
    # A person has every scope of their role.
    person = Viewer(
        account_id="a", role=Role.SCHOOL_ADMIN, display_name="a", student_ids=frozenset()
    )
    assert await _scoped_codes(person) == []
    parent = Viewer(account_id="p", role=Role.PARENT, display_name="p", student_ids=frozenset())
    assert parent.scopes == frozenset({SCOPE_DIARY})
    assert await _scoped_codes(parent) == ["FORBIDDEN"]
    # Narrowing the registration narrows tokens already issued, on their next request.
    await pool.execute(
        "UPDATE gateway.service_clients SET scopes = $2 WHERE id = $1::uuid",
        client_id,
        [SCOPE_SCHOOL_SIGN_INS],
    )
    again = await authenticate(f"Bearer {narrow['access_token']}", settings, pool)
    assert again is not None and again.scopes == frozenset()
    assert await _scoped_codes(again) == ["FORBIDDEN"]


# --- tokens ----------------------------------------------------------------------------


def _client_claims(client_id: str, **overrides: Any) -> dict[str, Any]:
    return token_claims(
        typ="client", sub=client_id, sid=None, scope=SCOPE_REGION_ANALYTICS, **overrides
    )


async def test_expired_and_foreign_client_tokens(
    client: httpx.AsyncClient, analyst: tuple[str, str], settings: Settings
) -> None:
    client_id, _ = analyst
    past = int(time.time()) - 60
    expired = sign_token(settings, _client_claims(client_id, iat=past - 300, exp=past))
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401
    assert error_codes(response.json()) == ["TOKEN_EXPIRED"]
    forged = sign_token(
        settings, _client_claims(client_id), secret="another-secret-another-secret-0123456789"
    )
    unknown = sign_token(settings, _client_claims(str(uuid.uuid4())))
    for token in (forged, unknown):
        response = await client.post(
            "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert error_codes(response.json()) == ["UNAUTHENTICATED"]
    valid = sign_token(settings, _client_claims(client_id))
    # A client token is never a browser session cookie.
    cookie_only = await client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={
            "Cookie": f"{settings.auth.session_cookie}={valid}",
            "Origin": next(iter(settings.auth.allowed_origins)),
        },
    )
    assert cookie_only.status_code == 401


async def test_a_client_request_loads_its_viewer_in_one_statement(
    client: httpx.AsyncClient, analyst: tuple[str, str]
) -> None:
    client_id, secret = analyst
    token = (await request_token(client, client_id, secret)).json()["access_token"]
    await post_graphql(client, token, VIEWER)  # warm the connection's type cache
    with counting_statements(keep_text=True) as counter:
        payload = await post_graphql(client, token, VIEWER)
    assert payload["data"]["viewer"]["id"] == client_id
    statements = application_statements(counter)
    assert len(statements) == 1, statements
    assert "gateway.service_clients" in statements[0]
