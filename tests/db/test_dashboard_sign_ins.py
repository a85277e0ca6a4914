"""School dashboard, sign-in problems: events recorded by the app's recorder are counted.

Planted events are dated in a past week nobody else records into, so the counts are
exact; a real failed school-login attempt is found in today's (UTC) window.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from auth.store.audit import SignInEvent
from gateway.core import identifiers as snils
from gateway.core.errors import MESSAGES, ErrorCode
from tests.support.dashboard_support import admin_school_id, ask, dashboard_query, other_school_id
from tests.support.environment import GraphQL
from tests.support.planted import error_codes

SIGN_INS = """signIns {
  attempts failures
  byOutcome { outcome message attempts lastAt }
  recentFailures(first: $first, outcome: $outcome) {
    id at method outcome message maskedSnils maskedPhone login
  }
}"""
QUERY = dashboard_query(SIGN_INS).replace(
    "$to: Date)", "$to: Date, $first: Int! = 20, $outcome: String)"
)
WEEK = ("2025-03-03", "2025-03-09")
MONDAY = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
PARENT_SNILS = snils.make("777000444")
PARENT_PHONE = "+79990000044"


async def sign_ins(gql: GraphQL, school_id: int, **variables: Any) -> dict[str, Any]:
    payload = await ask(gql, QUERY, school_id, **variables)
    assert "errors" not in payload, payload
    result: dict[str, Any] = payload["data"]["schoolDashboard"]["signIns"]
    return result


async def test_planted_events_by_outcome(
    gql: GraphQL, owner_conn: asyncpg.Connection, app: Starlette
) -> None:
    school_id = await admin_school_id(owner_conn)
    other = await other_school_id(owner_conn, school_id)
    recorder = app.state.auth.recorder
    mine = (school_id,)

    def event(minutes: int, outcome: str, method: str = "ESIA", **fields: Any) -> SignInEvent:
        return SignInEvent(
            method=method, outcome=outcome, at=MONDAY + timedelta(minutes=minutes), **fields
        )

    planted = [
        event(1, "SIGNED_IN", school_ids=mine, snils=PARENT_SNILS, phone=PARENT_PHONE),
        event(2, "INVALID_CREDENTIALS", "PASSWORD", login="ivanov.test", school_ids=mine),
        event(3, "INVALID_CREDENTIALS", "PASSWORD", login="ivanov.test", school_ids=mine),
        event(4, "SIGN_IN_LOCKED", "PASSWORD", login="ivanov.test", school_ids=mine),
        event(
            5,
            "ESIA_ACCOUNT_NOT_CONFIRMED",
            school_ids=(school_id, other),
            snils=PARENT_SNILS,
            phone=PARENT_PHONE,
        ),
        # Not this school's people, or outside the window: never shown.
        event(6, "INVALID_CREDENTIALS", "PASSWORD", login="other.school", school_ids=(other,)),
        event(7, "NOT_IN_REGISTRY", snils=PARENT_SNILS),
        event(60 * 24 * 7, "INVALID_CREDENTIALS", "PASSWORD", login="next.week", school_ids=mine),
    ]
    await forget_planted(owner_conn)  # left over by an interrupted run on a kept database
    for item in planted:
        recorder.sign_in(item)
    await recorder.flush()
    try:
        await check_planted(gql, school_id)
    finally:
        await forget_planted(owner_conn)


async def forget_planted(owner_conn: asyncpg.Connection) -> None:
    """Remove the planted events (the superuser may; the gateway's role may not)."""
    await owner_conn.execute(
        "DELETE FROM gateway.sign_in_events WHERE at >= $1 AND at < $2",
        MONDAY - timedelta(days=1),
        MONDAY + timedelta(days=14),
    )


async def check_planted(gql: GraphQL, school_id: int) -> None:
    shown = await sign_ins(gql, school_id, date_from=WEEK[0], date_to=WEEK[1])
    assert (shown["attempts"], shown["failures"]) == (5, 4)
    assert [(item["outcome"], item["attempts"]) for item in shown["byOutcome"]] == [
        ("INVALID_CREDENTIALS", 2),
        ("ESIA_ACCOUNT_NOT_CONFIRMED", 1),
        ("SIGNED_IN", 1),
        ("SIGN_IN_LOCKED", 1),
    ]
    invalid = shown["byOutcome"][0]
    assert invalid["message"] == MESSAGES[ErrorCode.INVALID_CREDENTIALS]
    assert datetime.fromisoformat(invalid["lastAt"]) == MONDAY + timedelta(minutes=3)
    recent = shown["recentFailures"]
    assert [(item["outcome"], item["login"]) for item in recent] == [
        ("ESIA_ACCOUNT_NOT_CONFIRMED", None),
        ("SIGN_IN_LOCKED", "ivanov.test"),
        ("INVALID_CREDENTIALS", "ivanov.test"),
        ("INVALID_CREDENTIALS", "ivanov.test"),
    ]
    assert (
        recent[0]["maskedSnils"]
        == snils.masked(PARENT_SNILS)
        == "***-***-444 " + (PARENT_SNILS[9:])
    )
    assert recent[0]["maskedPhone"] == "+7999***44"
    assert recent[0]["method"] == "ESIA"
    assert recent[0]["message"] == MESSAGES[ErrorCode.ESIA_ACCOUNT_NOT_CONFIRMED]
    assert datetime.fromisoformat(recent[0]["at"]) == MONDAY + timedelta(minutes=5)
    text = json.dumps(shown)
    assert PARENT_SNILS not in text and PARENT_PHONE not in text

    only = await sign_ins(
        gql, school_id, date_from=WEEK[0], date_to=WEEK[1], outcome="SIGN_IN_LOCKED", first=5
    )
    assert [item["outcome"] for item in only["recentFailures"]] == ["SIGN_IN_LOCKED"]
    assert only["byOutcome"] == shown["byOutcome"]  # the filter applies to the list only
    newest = await sign_ins(gql, school_id, date_from=WEEK[0], date_to=WEEK[1], first=1)
    assert newest["recentFailures"] == recent[:1]
    payload = await ask(gql, QUERY, school_id, date_from=WEEK[0], date_to=WEEK[1], first=501)
    assert error_codes(payload) == ["LIMIT_OUT_OF_RANGE"]


async def test_a_real_failed_school_login_is_shown(
    gql: GraphQL, owner_conn: asyncpg.Connection, app: Starlette
) -> None:
    school_id = await admin_school_id(owner_conn)
    login = await owner_conn.fetchval(
        "SELECT login FROM school.students WHERE school_id = $1 AND login IS NOT NULL "
        "ORDER BY id DESC LIMIT 1",
        school_id,
    )
    address = "198.51.100.55"
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000"
        ) as client:
            response = await client.post(
                "/auth/login", json={"login": login, "password": "wrong-password-1"}
            )
        assert response.status_code == 401
        await app.state.auth.recorder.flush()
        today = datetime.now(UTC).date().isoformat()
        shown = await sign_ins(
            gql, school_id, date_from=today, date_to=today, outcome="INVALID_CREDENTIALS"
        )
    finally:
        await owner_conn.execute(
            "DELETE FROM gateway.sign_in_throttle WHERE key = ANY($1::text[])",
            [f"login:{login}", f"address:{address}"],
        )
    assert any(
        item["login"] == login and item["method"] == "PASSWORD" for item in shown["recentFailures"]
    )
    assert shown["failures"] >= 1
