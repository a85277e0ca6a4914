"""The pages in a real Chromium: each role's sign-in lands on its page, which reads the
viewer through POST /graphql with the session cookie; sign-out leaves nothing private
behind the back button; the pages fit a 360 px phone and a 1280 px screen."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from fixtures.demo import demo_account
from gateway.core.settings import PROJECT_ROOT
from tests.support.environment import GraphQL
from tests.support.live_server import LiveServer

STUDENT_LOGIN = str(demo_account("student-young").login)
STUDENT_PASSWORD = "Dnevnik-2026"
CHILDREN = "{ myChildren { id fullName school { name } schoolClass { name } } }"
ESIA_BUTTON = "Вход для пользователей старше 14,5 лет"
LOAD_TIMEOUT_MS = 15_000
DOCUMENTS = PROJECT_ROOT / "web" / "documents"


async def esia_sign_in(page: Page, live: LiveServer, key: str) -> None:
    """Through the sign-in page and the development identity provider, as a demo person."""
    await page.goto(f"{live.url}/")
    await expect(page).to_have_url(f"{live.url}/auth/login?return_to=%2F")
    await page.get_by_role("link", name=ESIA_BUTTON).click()
    await page.get_by_role("button", name=demo_account(key).full_name).click()


async def password_sign_in(page: Page, live: LiveServer, password: str) -> None:
    await page.goto(f"{live.url}/auth/login")
    await page.fill("#login", STUDENT_LOGIN)
    await page.fill("#password", password)
    await page.get_by_role("button", name="Вход").click()


async def children_on_page(page: Page) -> list[dict[str, Any]]:
    cards = page.locator("#children > li")
    return [
        {
            "id": await card.get_attribute("data-child-id"),
            "text": " ".join((await card.inner_text()).split()),
        }
        for card in await cards.all()
    ]


def expected_cards(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": child["id"],
            "text": f"{child['fullName']} {child['school']['name']} "
            f"Класс: {child['schoolClass']['name']}",
        }
        for child in children
    ]


def registered_hash(name: str) -> str:
    """The SHA-256 of a page's document (web/documents/<name>.graphql), as registered."""
    return hashlib.sha256((DOCUMENTS / f"{name}.graphql").read_bytes()).hexdigest()


async def test_two_school_parent_signs_in_with_esia_and_sees_both_children(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    sent: list[Any] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.post_data_json)
            if request.url == f"{live.url}/graphql"
            and "text/event-stream" not in (request.headers.get("accept") or "")
            else None
        ),
    )
    await esia_sign_in(page, live, "parent-two-schools")
    await expect(page).to_have_url(f"{live.url}/diary")
    parent = demo_account("parent-two-schools")
    await expect(page.locator("[data-viewer-name]")).to_have_text(parent.full_name)
    await expect(page.locator("#children > li")).to_have_count(2, timeout=LOAD_TIMEOUT_MS)
    api = (await gql(CHILDREN, account="parent-two-schools"))["data"]["myChildren"]
    assert len({child["school"]["name"] for child in api}) == 2
    assert await children_on_page(page) == expected_cards(api)
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    # The page asked by its registered documents' hashes only (no query text): who is
    # signed in and the children, then the first child's current week and its averages.
    await expect(page.locator("#subjects [data-subject-id]").first).to_be_visible()
    assert [body["operationName"] for body in sent] == [
        "DiaryChildren",
        "DiaryWeek",
        "DiaryAverages",
    ]
    for body in sent:
        hashed = {"version": 1, "sha256Hash": registered_hash(body["operationName"])}
        assert body["extensions"] == {"persistedQuery": hashed} and "query" not in body
    assert sent[0]["variables"] == {} and sent[1]["variables"] == {"student": api[0]["id"]}


async def test_student_signs_in_with_school_login(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await password_sign_in(page, live, STUDENT_PASSWORD)
    await expect(page).to_have_url(f"{live.url}/diary")
    await expect(page.locator("#children > li")).to_have_count(1, timeout=LOAD_TIMEOUT_MS)
    api = (await gql(CHILDREN, account="student-young"))["data"]["myChildren"]
    assert await children_on_page(page) == expected_cards(api)


async def test_wrong_password_shows_the_russian_message(live: LiveServer, page: Page) -> None:
    await password_sign_in(page, live, "Dnevnik-2025")
    await expect(page.get_by_role("alert")).to_have_text("Неверный логин или пароль.")
    await expect(page).to_have_url(f"{live.url}/auth/login")
    cookies = await page.context.cookies()
    assert "sg_session" not in {cookie["name"] for cookie in cookies}


@pytest.mark.parametrize(
    ("key", "landing", "heading"),
    [
        ("school-admin", "/school", "Панель школы"),
        ("regional-analyst", "/analytics", "Аналитика региона"),
    ],
)
async def test_staff_land_on_their_pages(
    live: LiveServer, page: Page, key: str, landing: str, heading: str
) -> None:
    await esia_sign_in(page, live, key)
    await expect(page).to_have_url(f"{live.url}{landing}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    viewer = page.locator("[data-viewer-name]")
    await expect(viewer).to_have_text(demo_account(key).full_name, timeout=LOAD_TIMEOUT_MS)


async def test_sign_out_then_back_shows_nothing_private(live: LiveServer, page: Page) -> None:
    await esia_sign_in(page, live, "parent-two-schools")
    await expect(page.locator("#children > li")).to_have_count(2, timeout=LOAD_TIMEOUT_MS)
    private = await page.locator("#children > li h2").all_inner_texts()
    await page.get_by_role("button", name="Выйти").click()
    await expect(page).to_have_url(f"{live.url}/auth/login")
    await page.go_back(wait_until="commit")
    await expect(page).to_have_url(f"{live.url}/auth/login?return_to=%2Fdiary")
    content = await page.content()
    assert private and not [name for name in private if name in content]
    await page.goto(f"{live.url}/diary")
    await expect(page).to_have_url(f"{live.url}/auth/login?return_to=%2Fdiary")


@pytest.mark.parametrize("width", [360, 1280])
async def test_diary_fits_the_screen(
    live: LiveServer, page: Page, width: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await page.set_viewport_size({"width": width, "height": 800})
    await esia_sign_in(page, live, "parent-two-schools")
    await expect(page.locator("#children > li")).to_have_count(2, timeout=LOAD_TIMEOUT_MS)
    overflow = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], f"horizontal overflow at {width} px: {overflow}"
    folder = os.environ.get("BROWSER_SCREENSHOTS")
    shots = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    shot = shots / f"diary-{width}.png"
    image = await page.screenshot(path=shot, full_page=True)
    assert image.startswith(b"\x89PNG")


async def test_a_page_without_a_session_signs_in_and_comes_back(
    live: LiveServer, page: Page
) -> None:
    await page.goto(f"{live.url}/diary")
    await expect(page).to_have_url(f"{live.url}/auth/login?return_to=%2Fdiary")
    await page.fill("#login", STUDENT_LOGIN)
    await page.fill("#password", STUDENT_PASSWORD)
    await page.get_by_role("button", name="Вход").click()
    await expect(page).to_have_url(f"{live.url}/diary")
    await expect(page.locator("#children > li")).to_have_count(1, timeout=LOAD_TIMEOUT_MS)
    await page.goto(f"{live.url}/school")
    await expect(page).to_have_url(f"{live.url}/diary")
