"""Sign-in through ESIA, driven over real HTTP through the development identity provider.

A live server (tests/support/live_server.py) runs the real app; an httpx client starts at
/auth/esia/login, follows the redirect to the provider's login page, submits the form
and brings the code back to /auth/esia/callback, as a browser would. Each outcome is
checked on the page/JSON AND on the recorded gateway.sign_in_events row.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from auth.signin.esia import (
    CommandSigner,
    dev_signature,
    secret_text,
)
from fixtures.demo import demo_account
from fixtures.dev_idp.persons import DEV_IDP_PASSWORD
from gateway.app import create_app
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.identifiers import formatted, masked, masked_phone
from gateway.core.identifiers import make as make_snils
from gateway.core.settings import Settings
from tests.conftest import _test_env
from tests.support.live_server import LiveServer, live_server
from tests.unit.test_esia_adapter import ECHO_SIGNER

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
API = {"Accept": "application/json"}
FAMILY_QUERY = "{ viewer { role displayName } myChildren { id fullName } }"


# -- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
async def live(database_url: str, data_dir: Path, pool: asyncpg.Pool) -> AsyncIterator[LiveServer]:
    async with live_server(_test_env(database_url, data_dir), pool) as server:
        yield server


@pytest.fixture
async def browser(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, headers=BROWSER, timeout=30) as client:
        yield client


class _Forms(HTMLParser):
    """Every <form> of a page: its id, action and named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"id": values.get("id"), "action": values["action"], "fields": {}})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")


def login_form(page: str) -> tuple[str, dict[str, str]]:
    parser = _Forms()
    parser.feed(page)
    (form,) = [f for f in parser.forms if f["id"] == "login-form"]
    return form["action"], dict(form["fields"])


@dataclass(frozen=True, slots=True)
class Flow:
    callback_url: str  # where the provider sent the browser back
    response: httpx.Response  # the gateway's answer to the callback


async def provider_redirect(
    client: httpx.AsyncClient,
    login: str,
    *,
    password: str = DEV_IDP_PASSWORD,
    action: str = "login",
    params: dict[str, str] | None = None,
) -> str:
    """/auth/esia/login → (redirects followed) the login page → POST → the callback URL."""
    page = await client.get("/auth/esia/login", params=params or {}, follow_redirects=True)
    assert page.status_code == 200, page.text
    assert "/dev-idp/aas/oauth2/v2/ac" in str(page.url)
    action_url, fields = login_form(page.text)
    fields.update(login=login, password=password, action=action)
    answer = await client.post(action_url, data=fields)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def esia_flow(client: httpx.AsyncClient, login: str, **kwargs: Any) -> Flow:
    callback_url = await provider_redirect(client, login, **kwargs)
    assert callback_url.startswith(str(client.base_url) + "/auth/esia/callback?")
    return Flow(callback_url, await client.get(callback_url))


async def events_after(
    live: LiveServer, conn: asyncpg.Connection, since: int
) -> list[asyncpg.Record]:
    await live.app.state.auth.recorder.flush()
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM gateway.sign_in_events WHERE id > $1 ORDER BY id", since
    )
    return rows


async def last_event_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM gateway.sign_in_events"))


async def graphql(
    live: LiveServer, client: httpx.AsyncClient, query: str, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query},
        headers={"Origin": live.url, "Accept": "application/json", **headers},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def children_by_registry(
    conn: asyncpg.Connection, *, snils: str | None = None, phone: str | None = None
) -> list[int]:
    """Independent expectation: the students linked to parent records with this SNILS,
    or (phone) with this phone and no SNILS."""
    rows = await conn.fetch(
        """SELECT DISTINCT ps.student_id FROM school.parents p
           JOIN school.parent_students ps ON ps.parent_id = p.id
           WHERE ($1::text IS NOT NULL AND p.snils = $1)
              OR ($2::text IS NOT NULL AND p.phone = $2 AND p.snils IS NULL)
           ORDER BY 1""",
        snils,
        phone,
    )
    return [row["student_id"] for row in rows]


def assert_page(response: httpx.Response, code: ErrorCode, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert MESSAGES[code] in response.text
    assert f"Код: {code.value}" in response.text
    assert "set-cookie" not in response.headers


# -- successful sign-ins ------------------------------------------------------------------


async def test_parent_of_one_school_gets_a_cookie_session(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    account = demo_account("parent-one-school")
    assert account.snils and account.phone
    since = await last_event_id(owner_conn)
    flow = await esia_flow(
        browser, formatted(account.snils), params={"return_to": "/graphql?from=esia"}
    )
    assert flow.response.status_code == 303, flow.response.text
    assert flow.response.headers["location"] == "/graphql?from=esia"
    cookie = flow.response.headers["set-cookie"]
    assert cookie.startswith(f"{live.settings.auth.session_cookie}=")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()

    payload = await graphql(live, browser, FAMILY_QUERY)
    assert payload["data"]["viewer"] == {"role": "PARENT", "displayName": account.full_name}
    expected = await children_by_registry(owner_conn, snils=account.snils)
    assert len(expected) == 2
    assert sorted(int(c["id"]) for c in payload["data"]["myChildren"]) == expected

    (event,) = await events_after(live, owner_conn, since)
    assert (event["method"], event["outcome"]) == ("ESIA", "SIGNED_IN")
    assert event["masked_snils"] == masked(account.snils)
    assert event["masked_phone"] == masked_phone(account.phone)
    assert account.snils not in str(dict(event)) and account.phone not in str(dict(event))
    assert event["school_ids"] == [1]
    assert event["account_id"] is not None
    assert event["client_address"] == "127.0.0.1"
    session = await owner_conn.fetchrow(
        "SELECT kind, method FROM gateway.sessions WHERE account_id = $1 "
        "ORDER BY created_at DESC LIMIT 1",
        event["account_id"],
    )
    assert tuple(session) == ("BROWSER", "ESIA")


async def test_merged_parent_sees_children_of_both_schools(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    account = demo_account("parent-two-schools")
    assert account.snils
    since = await last_event_id(owner_conn)
    flow = await esia_flow(browser, account.snils)
    assert flow.response.status_code == 303
    payload = await graphql(live, browser, FAMILY_QUERY)
    children = payload["data"]["myChildren"]
    expected = await children_by_registry(owner_conn, snils=account.snils)
    assert sorted(int(c["id"]) for c in children) == expected
    schools = await owner_conn.fetch(
        "SELECT DISTINCT school_id FROM school.students WHERE id = ANY($1::int[])", expected
    )
    assert {row["school_id"] for row in schools} == {1, 2}
    assert {c["fullName"] for c in children} == {
        f"{c.last_name} {c.first_name} {c.patronymic}" for c in account.children
    }
    # Another family's child stays out of reach of this cookie session.
    (other, *_) = await children_by_registry(
        owner_conn, snils=demo_account("parent-one-school").snils
    )
    denied = await graphql(live, browser, f'{{ student(id: "{other}") {{ id }} }}')
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    (event,) = await events_after(live, owner_conn, since)
    assert event["outcome"] == "SIGNED_IN" and event["school_ids"] == [1, 2]


async def test_older_student_signs_in_as_student(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    account = demo_account("student-older")
    assert account.snils and account.phone
    since = await last_event_id(owner_conn)
    flow = await esia_flow(browser, account.phone)  # the provider also takes the phone
    assert flow.response.status_code == 303
    payload = await graphql(live, browser, "{ viewer { role displayName } }")
    assert payload["data"]["viewer"] == {"role": "STUDENT", "displayName": account.full_name}
    student_id = await owner_conn.fetchval(
        "SELECT id FROM school.students WHERE snils = $1", account.snils
    )
    row = await owner_conn.fetchrow(
        "SELECT a.role, a.student_id FROM gateway.sessions s "
        "JOIN gateway.accounts a ON a.id = s.account_id "
        "WHERE s.method = 'ESIA' ORDER BY s.created_at DESC LIMIT 1"
    )
    assert tuple(row) == ("STUDENT", student_id)
    (event,) = await events_after(live, owner_conn, since)
    assert event["outcome"] == "SIGNED_IN" and event["school_ids"] == [2]
    assert event["masked_snils"] == masked(account.snils)


async def test_parent_matched_by_phone_only(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    account = demo_account("parent-phone-only")
    assert account.snils and account.phone and not account.snils_in_registry
    # The registry record has no SNILS, only the phone the person confirmed in ESIA.
    records = await owner_conn.fetch(
        "SELECT school_id, snils FROM school.parents WHERE phone = $1", account.phone
    )
    assert [tuple(r) for r in records] == [(3, None)]
    assert await children_by_registry(owner_conn, snils=account.snils) == []
    since = await last_event_id(owner_conn)
    flow = await esia_flow(browser, account.snils)
    assert flow.response.status_code == 303, flow.response.text
    payload = await graphql(live, browser, FAMILY_QUERY)
    expected = await children_by_registry(owner_conn, phone=account.phone)
    assert len(expected) == 1
    assert [int(c["id"]) for c in payload["data"]["myChildren"]] == expected
    assert payload["data"]["myChildren"][0]["fullName"] == "Соколов Артём Дмитриевич"
    (event,) = await events_after(live, owner_conn, since)
    assert event["outcome"] == "SIGNED_IN" and event["school_ids"] == [3]
    stored = await owner_conn.fetchrow(
        "SELECT role, snils, phone FROM gateway.accounts WHERE id = $1", event["account_id"]
    )
    assert tuple(stored) == ("PARENT", account.snils, account.phone)


@pytest.mark.parametrize(
    ("key", "role"), [("school-admin", "SCHOOL_ADMIN"), ("regional-analyst", "REGIONAL_ANALYST")]
)
async def test_staff_sign_in_by_snils(
    live: LiveServer, browser: httpx.AsyncClient, key: str, role: str
) -> None:
    account = demo_account(key)
    assert account.snils
    flow = await esia_flow(browser, account.snils)
    assert flow.response.status_code == 303
    payload = await graphql(live, browser, "{ viewer { role displayName } }")
    assert payload["data"]["viewer"] == {"role": role, "displayName": account.full_name}


async def test_api_client_gets_tokens(live: LiveServer, owner_conn: asyncpg.Connection) -> None:
    account = demo_account("parent-two-schools")
    assert account.snils
    async with httpx.AsyncClient(base_url=live.url, headers=API, timeout=30) as api:
        flow = await esia_flow(api, account.snils, params={"client": "api"})
        assert flow.response.status_code == 200, flow.response.text
        tokens = flow.response.json()
        assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
        assert "set-cookie" not in flow.response.headers
        assert flow.response.headers["cache-control"] == "no-store"
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as fresh:  # no cookies
        response = await fresh.post(
            "/graphql",
            json={"query": FAMILY_QUERY},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
    payload = response.json()
    assert payload["data"]["viewer"]["role"] == "PARENT"
    expected = await children_by_registry(owner_conn, snils=account.snils)
    assert sorted(int(c["id"]) for c in payload["data"]["myChildren"]) == expected


# -- refusals -----------------------------------------------------------------------------


async def test_unconfirmed_account_is_refused(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    since = await last_event_id(owner_conn)
    flow = await esia_flow(browser, "+7 912 555-01-90")
    assert_page(flow.response, ErrorCode.ESIA_ACCOUNT_NOT_CONFIRMED, 403)
    assert "пройти процедуру проверки своих данных" in flow.response.text
    (event,) = await events_after(live, owner_conn, since)
    assert event["outcome"] == "ESIA_ACCOUNT_NOT_CONFIRMED"
    assert event["masked_snils"].startswith("***-***-") and event["account_id"] is None
    assert event["school_ids"] == []


async def test_confirmed_person_in_no_registry(
    live: LiveServer,
    browser: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = demo_account("parent-unregistered")
    assert account.snils and account.phone
    since = await last_event_id(owner_conn)
    with caplog.at_level(logging.DEBUG):
        flow = await esia_flow(browser, account.snils)
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side
    for record in server_side:  # nothing personal in the gateway's or authlib's logs
        line = record.getMessage()
        for value in (account.snils, formatted(account.snils), account.phone, account.last_name):
            assert value not in line, line
    assert_page(flow.response, ErrorCode.NOT_IN_REGISTRY, 403)
    assert "проверить наличие номера СНИЛС" in flow.response.text
    (event,) = await events_after(live, owner_conn, since)
    assert (event["outcome"], event["school_ids"], event["account_id"]) == (
        "NOT_IN_REGISTRY",
        [],
        None,
    )
    assert event["masked_snils"] == masked(account.snils)


async def test_phone_never_matches_a_record_holding_another_snils(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    account = demo_account("parent-unregistered")
    assert account.snils and account.phone
    victim = await owner_conn.fetchval("SELECT min(id) FROM school.students WHERE school_id = 1")
    record_id = await owner_conn.fetchval("SELECT max(id) + 1 FROM school.parents")
    # A record of someone else (another SNILS) that happens to hold this person's phone.
    await owner_conn.execute(
        "INSERT INTO school.parents (id, school_id, last_name, first_name, phone, snils) "
        "VALUES ($1, 1, 'Другая', 'Персона', $2, $3)",
        record_id,
        account.phone,
        make_snils("111222333"),
    )
    await owner_conn.execute(
        "INSERT INTO school.parent_students (parent_id, student_id, relation) "
        "VALUES ($1, $2, 'mother')",
        record_id,
        victim,
    )
    try:
        refused = await esia_flow(browser, account.snils)
        assert_page(refused.response, ErrorCode.NOT_IN_REGISTRY, 403)
        # Without a SNILS in the record, the verified phone is the match.
        await owner_conn.execute("UPDATE school.parents SET snils = NULL WHERE id = $1", record_id)
        flow = await esia_flow(browser, account.snils)
        assert flow.response.status_code == 303
        payload = await graphql(live, browser, "{ myChildren { id } }")
        assert payload["data"]["myChildren"] == [{"id": str(victim)}]
    finally:
        await owner_conn.execute("DELETE FROM school.parents WHERE id = $1", record_id)
    # The registry changed back: the same session sees nobody on its next request.
    payload = await graphql(live, browser, "{ myChildren { id } }")
    assert payload["data"]["myChildren"] == []


async def test_api_client_gets_json_failures(live: LiveServer) -> None:
    account = demo_account("parent-unregistered")
    assert account.snils
    async with httpx.AsyncClient(base_url=live.url, headers=API, timeout=30) as api:
        flow = await esia_flow(api, account.snils, params={"client": "api"})
    assert flow.response.status_code == 403
    assert flow.response.json() == {
        "errors": [
            {
                "message": MESSAGES[ErrorCode.NOT_IN_REGISTRY],
                "extensions": {"code": "NOT_IN_REGISTRY"},
            }
        ]
    }


async def test_denied_at_the_provider(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    since = await last_event_id(owner_conn)
    flow = await esia_flow(browser, "", action="deny")
    query = parse_qs(urlsplit(flow.callback_url).query)
    assert query["error"] == ["access_denied"] and "code" not in query
    assert_page(flow.response, ErrorCode.ESIA_DENIED, 403)
    (event,) = await events_after(live, owner_conn, since)
    assert event["outcome"] == "ESIA_DENIED" and event["masked_snils"] is None


async def test_wrong_password_stays_on_the_login_page(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/auth/esia/login", follow_redirects=True)
    action, fields = login_form(page.text)
    snils = demo_account("parent-one-school").snils
    assert snils
    fields.update(login=snils, password="wrong", action="login")
    answer = await browser.post(action, data=fields)
    assert answer.status_code == 200
    assert "Неверный СНИЛС, телефон или пароль." in answer.text
    assert "location" not in answer.headers


async def test_state_unknown_reused_or_expired(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    snils = demo_account("parent-one-school").snils
    assert snils
    since = await last_event_id(owner_conn)
    # Unknown state (and none at all).
    unknown = await browser.get("/auth/esia/callback", params={"state": "forged", "code": "x"})
    assert_page(unknown, ErrorCode.ESIA_STATE_MISMATCH, 400)
    missing = await browser.get("/auth/esia/callback", params={"code": "x"})
    assert_page(missing, ErrorCode.ESIA_STATE_MISMATCH, 400)
    # Reused: the callback URL works once.
    flow = await esia_flow(browser, snils)
    assert flow.response.status_code == 303
    replay = await browser.get(flow.callback_url)
    assert_page(replay, ErrorCode.ESIA_STATE_MISMATCH, 400)
    # Expired: the request is older than 10 minutes.
    callback_url = await provider_redirect(browser, snils)
    state = parse_qs(urlsplit(callback_url).query)["state"][0]
    expires = await owner_conn.fetchval(
        "SELECT expires_at - created_at FROM gateway.esia_requests WHERE state = $1", state
    )
    assert expires.total_seconds() == 600
    await owner_conn.execute(
        "UPDATE gateway.esia_requests SET expires_at = now() - interval '1 second' "
        "WHERE state = $1",
        state,
    )
    expired = await browser.get(callback_url)
    assert_page(expired, ErrorCode.ESIA_STATE_MISMATCH, 400)
    assert (
        await owner_conn.fetchval(
            "SELECT count(*) FROM gateway.esia_requests WHERE state = $1", state
        )
        == 0
    )
    events = await events_after(live, owner_conn, since)
    assert [e["outcome"] for e in events] == [
        "ESIA_STATE_MISMATCH",
        "ESIA_STATE_MISMATCH",
        "SIGNED_IN",
        "ESIA_STATE_MISMATCH",
        "ESIA_STATE_MISMATCH",
    ]


async def test_callback_from_another_browser_is_refused(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    """Login CSRF: a callback URL made with the attacker's ESIA account (their state and
    code) must not sign the victim's browser in as the attacker."""
    attacker = demo_account("parent-one-school").snils
    assert attacker
    callback_url = await provider_redirect(browser, attacker)
    binding = [c for c in browser.cookies.jar if c.name == "sg_esia_binding"]
    assert len(binding) == 1 and binding[0].path == "/auth/esia"
    assert binding[0].has_nonstandard_attr("HttpOnly")
    since = await last_event_id(owner_conn)
    async with httpx.AsyncClient(base_url=live.url, headers=BROWSER, timeout=30) as victim:
        # The victim has a sign-in of their own in flight: its binding is not the attacker's.
        await victim.get("/auth/esia/login")
        answer = await victim.get(callback_url)
        assert_page(answer, ErrorCode.ESIA_STATE_MISMATCH, 400)
        assert "sg_session" not in answer.cookies
    (event,) = await events_after(live, owner_conn, since)
    assert event["outcome"] == "ESIA_STATE_MISMATCH" and event["account_id"] is None
    # The state is spent: the attacker's own browser cannot use it afterwards either.
    assert_page(await browser.get(callback_url), ErrorCode.ESIA_STATE_MISMATCH, 400)


async def test_one_browser_may_have_two_sign_ins_in_flight(browser: httpx.AsyncClient) -> None:
    snils = demo_account("parent-one-school").snils
    assert snils
    first = await provider_redirect(browser, snils)
    second = await provider_redirect(browser, snils)
    assert (await browser.get(first)).status_code == 303
    assert (await browser.get(second)).status_code == 303


async def test_return_to_must_be_a_local_path(browser: httpx.AsyncClient) -> None:
    snils = demo_account("parent-one-school").snils
    assert snils
    flow = await esia_flow(browser, snils, params={"return_to": "https://evil.example/"})
    assert flow.response.status_code == 303
    assert flow.response.headers["location"] == "/graphql"


async def test_dev_provider_refuses_bad_authorization_requests(
    live: LiveServer, browser: httpx.AsyncClient
) -> None:
    start = await browser.get("/auth/esia/login")
    assert start.status_code == 302
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["location"]).query).items()}
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["nonce"] and query["state"] and query["client_secret"]
    url = live.url + "/dev-idp/aas/oauth2/v2/ac"
    assert (await browser.get(url, params=query)).status_code == 200
    forged = await browser.get(url, params={**query, "client_secret": "forged"})
    assert forged.status_code == 400 and "client_secret" in forged.text
    no_pkce = {k: v for k, v in query.items() if not k.startswith("code_challenge")}
    assert (await browser.get(url, params=no_pkce)).status_code == 400
    no_nonce = {k: v for k, v in query.items() if k != "nonce"}
    assert (await browser.get(url, params=no_nonce)).status_code == 400
    elsewhere = "https://evil.example/callback"
    resigned = dev_signature(
        secret_text(
            query["client_id"], query["scope"], query["timestamp"], query["state"], elsewhere
        )
    )
    other = {**query, "redirect_uri": elsewhere, "client_secret": resigned}
    answer = await browser.get(url, params=other)
    assert answer.status_code == 400 and "location" not in answer.headers
    token = await browser.post(
        live.url + "/dev-idp/aas/oauth2/v3/te",
        data={"grant_type": "authorization_code", "code": "x", "client_id": query["client_id"]},
    )
    assert token.status_code in (400, 401) and token.json()["error"] == "invalid_client"


# -- provider failures and configuration ---------------------------------------------------


def _env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {**_test_env(database_url, data_dir), **extra}


async def test_provider_down_is_esia_unavailable(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    env = _env(
        database_url,
        data_dir,
        SCHOOL_GATEWAY_DEV_IDP="0",
        SCHOOL_GATEWAY_ESIA_URL="http://127.0.0.1:9",  # discard port: nothing listens
        SCHOOL_GATEWAY_ESIA_CLIENT_ID="SCHOOLGW",
        SCHOOL_GATEWAY_ESIA_SIGNER_COMMAND=ECHO_SIGNER,
        SCHOOL_GATEWAY_ESIA_TIMEOUT="2",
    )
    async with live_server(env, pool) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=BROWSER, timeout=30) as client:
            start = await client.get("/auth/esia/login", params={"return_to": "/x"})
            assert start.status_code == 302
            target = urlsplit(start.headers["location"])
            assert target.netloc == "127.0.0.1:9" and target.path == "/aas/oauth2/v2/ac"
            query = {k: v[0] for k, v in parse_qs(target.query).items()}
            assert query["client_id"] == "SCHOOLGW" and query["response_type"] == "code"
            assert query["access_type"] == "online" and query["nonce"]
            assert "code_challenge" not in query  # ESIA does not describe PKCE
            assert query["redirect_uri"] == server.url + "/auth/esia/callback"
            # The secret is what the signer returned for ESIA's text.
            text = secret_text(
                "SCHOOLGW",
                query["scope"],
                query["timestamp"],
                query["state"],
                query["redirect_uri"],
            )
            signed = await CommandSigner(ECHO_SIGNER, 5).sign(text)
            assert query["client_secret"] == signed
            since = await last_event_id(owner_conn)
            answer = await client.get(
                "/auth/esia/callback", params={"state": query["state"], "code": "c"}
            )
        assert_page(answer, ErrorCode.ESIA_UNAVAILABLE, 503)
        (event,) = await events_after(server, owner_conn, since)
        assert event["outcome"] == "ESIA_UNAVAILABLE"


# -- issue 9, item 15: the start is throttled; a new sign-in ends the previous session -----


async def test_esia_start_is_throttled_per_address(
    settings: Settings, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    """Over `esia_starts_per_minute` starts from one address: 429 RATE_LIMITED with
    Retry-After and a Russian page or JSON; other addresses are not affected."""
    busy, quiet = "203.0.113.60", "203.0.113.61"
    auth = dataclasses.replace(settings.auth, esia_starts_per_minute=3)
    app = create_app(dataclasses.replace(settings, auth=auth), pool=pool)

    def client_at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=settings.auth.public_url)

    try:
        async with client_at(busy) as client:
            starts = [(await client.get("/auth/esia/login")).status_code for _ in range(3)]
            assert starts == [302, 302, 302]
            refused = await client.get("/auth/esia/login", headers=API)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            (error,) = refused.json()["errors"]
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert "Слишком много попыток входа через Госуслуги" in error["message"]
            page = await client.get("/auth/esia/login", headers=BROWSER)
            assert page.status_code == 429 and "Код: RATE_LIMITED" in page.text
            assert "retry-after" in page.headers and "set-cookie" not in page.headers
        async with client_at(quiet) as client:
            assert (await client.get("/auth/esia/login")).status_code == 302
    finally:
        await app.state.auth.recorder.close()
        await owner_conn.execute(
            "DELETE FROM gateway.sign_in_throttle WHERE key = ANY($1::text[])",
            [f"esia:{busy}", f"esia:{quiet}"],
        )


async def test_a_new_sign_in_ends_the_browsers_previous_session(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    first_account = demo_account("parent-one-school")
    second_account = demo_account("parent-two-schools")
    assert first_account.snils and second_account.snils
    cookie_name = live.settings.auth.session_cookie
    first = await esia_flow(browser, formatted(first_account.snils))
    assert first.response.status_code == 303
    first_cookie = browser.cookies[cookie_name]
    second = await esia_flow(browser, formatted(second_account.snils))
    assert second.response.status_code == 303
    second_cookie = browser.cookies[cookie_name]
    assert second_cookie != first_cookie

    async with httpx.AsyncClient(base_url=live.url, timeout=30) as other:
        old = await other.post(
            "/graphql",
            json={"query": FAMILY_QUERY},
            headers={"Origin": live.url, "Cookie": f"{cookie_name}={first_cookie}"},
        )
        assert old.status_code == 401
        assert old.json()["errors"][0]["extensions"]["code"] == "SESSION_REVOKED"
    payload = await graphql(live, browser, FAMILY_QUERY)
    assert payload["data"]["viewer"]["displayName"] == second_account.full_name
