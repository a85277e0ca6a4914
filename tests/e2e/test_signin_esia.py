"""Sign-in through ESIA, driven over real HTTP through the development identity provider.

A live server (tests/support/live_server.py) runs the real app; an httpx client starts at
/auth/esia/login, follows the redirect to the provider's login page, submits the form
and brings the code back to /auth/esia/callback, as a browser would. Each outcome is
checked on the page/JSON AND on the recorded gateway.sign_in_events row.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from auth.signin.esia import (
    dev_signature,
    secret_text,
)
from fixtures.demo import demo_account
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.identifiers import formatted, masked, masked_phone
from gateway.core.identifiers import make as make_snils
from tests.support.esia_flow import (
    API,
    BROWSER,
    FAMILY_QUERY,
    assert_page,
    children_by_registry,
    esia_flow,
    events_after,
    graphql,
    last_event_id,
    login_form,
    provider_redirect,
)
from tests.support.live_server import LiveServer

# -- successful sign-ins ------------------------------------------------------------------


async def test_parent_of_one_school_gets_a_cookie_session(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    account = demo_account("parent-one-school")
    assert account.snils and account.phone
    since = await last_event_id(owner_conn, live)
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
    since = await last_event_id(owner_conn, live)
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
    since = await last_event_id(owner_conn, live)
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
    since = await last_event_id(owner_conn, live)
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
        # Opened as a page, the answer has an opaque origin: a script of the gateway's
        # pages cannot read the tokens out of a popup of it.
        assert flow.response.headers["content-security-policy"].startswith("sandbox")
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
    since = await last_event_id(owner_conn, live)
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
    since = await last_event_id(owner_conn, live)
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
    since = await last_event_id(owner_conn, live)
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
    since = await last_event_id(owner_conn, live)
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
    since = await last_event_id(owner_conn, live)
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
    assert flow.response.headers["location"] == "/"


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
