"""Driving an ESIA sign-in over real HTTP through the development identity provider: the
provider's login form, the flow's redirects, the sign-in events it records, the checks."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import asyncpg
import httpx

from fixtures.dev_idp.persons import DEV_IDP_PASSWORD
from gateway.core.errors import MESSAGES, ErrorCode
from tests.support.live_server import LiveServer

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
API = {"Accept": "application/json"}
FAMILY_QUERY = "{ viewer { role displayName } myChildren { id fullName } }"


# -- fixtures and helpers -----------------------------------------------------------------


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


async def last_event_id(conn: asyncpg.Connection, live: LiveServer | None = None) -> int:
    """The newest sign-in event's id; with `live`, after its recorder wrote what it holds
    (an earlier test's event written late would otherwise count as this test's)."""
    if live is not None:
        await live.app.state.auth.recorder.flush()
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
