"""The diary page in a real Chromium, against what the API answers for the same week: the
two-school parent's children, one child's lessons (marks, homework, cancelled and replaced
lessons said in words), the weighted averages, week navigation through the address, a
child outside the viewer's scope («Нет доступа», no data), empty weeks, an ended session,
and a full week on a 360 px phone and a 1280 px screen."""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from playwright.async_api import Page, expect

from auth.store.sessions import cookie_session_id, revoke_session
from fixtures.demo import demo_account
from gateway.core.settings import PROJECT_ROOT
from tests.browser.test_pages import (
    LOAD_TIMEOUT_MS,
    STUDENT_PASSWORD,
    esia_sign_in,
    password_sign_in,
)
from tests.support.environment import TODAY, GraphQL
from tests.support.live_server import LiveServer

PARENT = "parent-two-schools"
DOCUMENTS = PROJECT_ROOT / "web" / "documents"
# The data set's week (tests.support.environment.TODAY is its Friday) and its neighbours.
WEEK = "2026-11-23"
NEXT_WEEK = "2026-11-30"
PREVIOUS_WEEK = "2026-11-16"
HOLIDAY_WEEK = "2027-01-04"  # between the 2nd and 3rd quarters / the two half-years
FUTURE_WEEK = "2027-01-18"  # the 3rd quarter, after the data set's today


def document(name: str) -> str:
    return (DOCUMENTS / f"{name}.graphql").read_text(encoding="utf-8")


def average_text(value: float) -> str:
    """An average as the page shows it (Russian decimal comma, two decimals)."""
    return f"{value:.2f}".replace(".", ",")


async def api(gql: GraphQL, name: str, variables: dict[str, Any], account: str) -> Any:
    """The page's registered document `name`, run with the account's bearer token."""
    answer = await gql(document(name), variables, account=account)
    assert "errors" not in answer, answer
    return answer["data"]


async def children(gql: GraphQL, account: str = PARENT) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await api(gql, "DiaryChildren", {}, account))["myChildren"]
    return result


async def open_diary(page: Page, live: LiveServer) -> None:
    await esia_sign_in(page, live, PARENT)
    await expect(page).to_have_url(f"{live.url}/diary")
    await expect(page.locator("#days .day")).to_have_count(7, timeout=LOAD_TIMEOUT_MS)


async def shown_days(page: Page) -> list[str | None]:
    return [await day.get_attribute("data-date") for day in await page.locator("#days .day").all()]


def lessons_of(week: dict[str, Any]) -> list[dict[str, Any]]:
    return [lesson for day in week["diary"]["days"] for lesson in day["lessons"]]


async def check_week(page: Page, week: dict[str, Any]) -> dict[str, int]:
    """Every lesson of the API's week is on the page with its subject, marks, homework and
    change in words; the counts of what was checked."""
    seen = {"marks": 0, "homework": 0, "changed": 0}
    lessons = lessons_of(week)
    await expect(page.locator("#days [data-lesson-id]")).to_have_count(len(lessons))
    for lesson in lessons:
        item = page.locator(f'[data-lesson-id="{lesson["id"]}"]')
        text = " ".join((await item.inner_text()).split())
        shown = lesson["replacement"] or lesson
        assert shown["subject"]["name"] in text
        assert shown["teacher"]["name"] in text
        if lesson["startsAt"]:
            assert f"{lesson['startsAt'][:5]}–{lesson['endsAt'][:5]}" in text
        for mark in lesson["marks"]:
            mark_text = " ".join(
                (await item.locator(f'[data-mark-id="{mark["id"]}"]').inner_text()).split()
            )
            assert mark_text.startswith(mark["value"])
            assert mark["workType"]["name"] in mark_text
            assert f"вес {mark['weight']:g}".replace(".", ",") in mark_text
            if mark["workTitle"]:
                assert mark["workTitle"] in mark_text
            seen["marks"] += 1
        for task in lesson["homework"]:
            assert " ".join(task["text"].split()) in text
            for attachment in task["attachments"]:
                link = item.get_by_role("link", name=attachment["title"])
                await expect(link).to_have_attribute("href", attachment["url"])
            seen["homework"] += 1
        if lesson["status"] == "CANCELLED":
            assert "Урок отменён" in text
            seen["changed"] += 1
        if lesson["status"] == "REPLACED":
            assert f"Замена: по расписанию {lesson['subject']['name']}" in text
            seen["changed"] += 1
    return seen


async def shown_averages(page: Page) -> dict[str, str]:
    cards = page.locator("#subjects [data-subject-id]")
    result: dict[str, str] = {}
    for card in await cards.all():
        subject = await card.get_attribute("data-subject-id")
        assert subject is not None
        value = card.locator("[data-average]")
        result[subject] = await value.inner_text() if await value.count() else "—"
    return result


def expected_averages(averages: list[dict[str, Any]]) -> dict[str, str]:
    return {
        item["subject"]["id"]: (
            average_text(item["weightedAverage"]) if item["weightedAverage"] is not None else "—"
        )
        for item in averages
    }


async def test_both_children_weeks_and_averages_equal_the_api(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_diary(page, live)
    family = await children(gql)
    assert len({child["school"]["name"] for child in family}) == 2
    cards = page.locator("#children > li")
    await expect(cards).to_have_count(2)
    seen = {"marks": 0, "homework": 0, "changed": 0}
    for child in family:
        await cards.filter(has_text=child["fullName"]).get_by_role("link").click()
        await expect(page).to_have_url(f"{live.url}/diary?child={child['id']}")
        current = page.locator("#children a[aria-current=page]")
        await expect(current).to_have_text(child["fullName"])
        week = (
            await api(
                gql,
                "DiaryWeek",
                {"student": child["id"], "from": WEEK, "to": "2026-11-29"},
                PARENT,
            )
        )["student"]
        assert await shown_days(page) == [day["date"] for day in week["diary"]["days"]]
        for key, count in (await check_week(page, week)).items():
            seen[key] += count
        period = next(p for p in week["periods"] if p["startsOn"] <= WEEK <= p["endsOn"])
        await expect(page.locator("#averages-title")).to_have_text(
            f"Средние баллы: {period['title']}"
        )
        data = await api(
            gql, "DiaryAverages", {"student": child["id"], "period": period["id"]}, PARENT
        )
        expected = expected_averages(data["student"]["averages"])
        assert expected and any(value != "—" for value in expected.values())
        await expect(page.locator("#subjects [data-subject-id]")).to_have_count(len(expected))
        assert await shown_averages(page) == expected
        # Each subject with numbered marks has its chart: one point per such mark.
        for item in data["student"]["averages"]:
            numbered = [c for c in item["contributions"] if c["mark"]["numericValue"] is not None]
            dots = page.locator(f'[data-subject-id="{item["subject"]["id"]}"] svg circle')
            await expect(dots).to_have_count(len(numbered))
        updated = page.locator("#updated")
        await expect(updated).to_contain_text("Журнал обновлён")
    assert seen["marks"] > 0 and seen["homework"] > 0 and seen["changed"] > 0, seen


async def test_an_average_explains_which_marks_counted(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_diary(page, live)
    child = (await children(gql))[0]
    week = (await api(gql, "DiaryWeek", {"student": child["id"]}, PARENT))["student"]
    period = next(p for p in week["periods"] if p["isCurrent"])
    averages = (
        await api(gql, "DiaryAverages", {"student": child["id"], "period": period["id"]}, PARENT)
    )["student"]["averages"]
    subject = next(item for item in averages if item["weightedAverage"] is not None)
    card = page.locator(f'#subjects [data-subject-id="{subject["subject"]["id"]}"]')
    await card.get_by_text("Как посчитан средний балл").click()
    formula = card.locator(".formula")
    await expect(formula).to_be_visible()
    text = await formula.inner_text()
    assert text.endswith(
        f"/ {subject['weightSum']:g} = {average_text(subject['weightedAverage'])}".replace(".", ",")
    )
    entries = card.locator(".contributions li")
    await expect(entries).to_have_count(len(subject["contributions"]))
    counted = [c for c in subject["contributions"] if c["counted"]]
    await expect(card.locator(".contributions li.counted")).to_have_count(len(counted))


async def test_week_navigation_changes_the_dates_and_the_address(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_diary(page, live)
    assert TODAY.isoformat() in await shown_days(page)
    child = (await children(gql))[0]["id"]
    base = f"{live.url}/diary?child={child}"
    await page.get_by_role("link", name="Следующая").click()
    await expect(page).to_have_url(f"{base}&week={NEXT_WEEK}")
    await expect(page.locator("#days .day").first).to_have_attribute("data-date", NEXT_WEEK)
    await expect(page.locator("#week-title")).to_have_text("Неделя: 30 ноября – 6 декабря 2026 г.")
    for _ in range(2):
        await page.get_by_role("link", name="Предыдущая").click()
    await expect(page).to_have_url(f"{base}&week={PREVIOUS_WEEK}")
    await expect(page.locator("#days .day").first).to_have_attribute("data-date", PREVIOUS_WEEK)
    await page.get_by_role("link", name="Текущая неделя").click()
    await expect(page).to_have_url(base)
    await expect(page.locator("#days .day").first).to_have_attribute("data-date", WEEK)
    await page.go_back()
    await expect(page).to_have_url(f"{base}&week={PREVIOUS_WEEK}")
    await expect(page.locator("#days .day").first).to_have_attribute("data-date", PREVIOUS_WEEK)
    await page.fill("#week-date", "2026-12-02")
    await page.get_by_role("button", name="Показать").click()
    await expect(page).to_have_url(f"{base}&week={NEXT_WEEK}")
    await expect(page.locator("#days .day").first).to_have_attribute("data-date", NEXT_WEEK)
    await page.reload()
    await expect(page.locator("#days .day").first).to_have_attribute(
        "data-date", NEXT_WEEK, timeout=LOAD_TIMEOUT_MS
    )
    await expect(page.locator("#week-date")).to_have_value(NEXT_WEEK)
    # A day other than Monday in the address means its week, and the address says so.
    await page.goto(f"{base}&week=2026-11-26")
    await expect(page).to_have_url(f"{base}&week={WEEK}")
    await expect(page.locator("#days .day").first).to_have_attribute(
        "data-date", WEEK, timeout=LOAD_TIMEOUT_MS
    )


async def test_weekends_holidays_and_no_marks_yet_are_said_so(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_diary(page, live)
    weekend = page.locator('#days .day[data-date="2026-11-28"]')
    await expect(weekend).to_contain_text("Выходной")
    child = (await children(gql))[0]["id"]
    await page.goto(f"{live.url}/diary?child={child}&week={HOLIDAY_WEEK}")
    note = page.locator("#week-note")
    await expect(note).to_have_text("Каникулы: уроков на этой неделе нет.", timeout=LOAD_TIMEOUT_MS)
    await expect(page.locator(f'#days .day[data-date="{HOLIDAY_WEEK}"]')).to_contain_text(
        "Каникулы"
    )
    await expect(page.locator("#days [data-lesson-id]")).to_have_count(0)
    # A period that has not started: its lessons, but no marks and no averages yet.
    await page.goto(f"{live.url}/diary?child={child}&week={FUTURE_WEEK}")
    await expect(page.locator("#averages-title")).to_have_text(
        "Средние баллы: 3 четверть", timeout=LOAD_TIMEOUT_MS
    )
    await expect(page.locator("#subjects")).to_have_text("В этом периоде оценок пока нет.")
    assert await page.locator("#days [data-mark-id]").count() == 0


async def test_another_childs_id_is_no_access_and_no_data(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    others = await children(gql, "parent-one-school")
    own = await children(gql)
    assert not {child["id"] for child in others} & {child["id"] for child in own}
    await open_diary(page, live)
    for foreign in (others[0]["id"], "999999999"):
        await page.goto(f"{live.url}/diary?child={foreign}&week={WEEK}")
        heading = page.get_by_role("heading", name="Нет доступа")
        await expect(heading).to_be_visible(timeout=LOAD_TIMEOUT_MS)
        await expect(page).to_have_title("Нет доступа — Дневник")
        content = await page.content()
        for child in others + own:
            assert child["fullName"] not in content
        for selector in ("#children li", "[data-lesson-id]", "[data-subject-id]", "#final-marks *"):
            assert await page.locator(selector).count() == 0, selector
        await expect(page.locator("#diary")).to_be_hidden()


async def test_an_ended_session_goes_to_sign_in_and_back(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_diary(page, live)
    child = (await children(gql))[0]["id"]
    await page.context.clear_cookies()
    await page.get_by_role("link", name="Следующая").click()
    back = quote(f"/diary?child={child}&week={NEXT_WEEK}", safe="")
    await expect(page).to_have_url(
        f"{live.url}/auth/login?return_to={back}", timeout=LOAD_TIMEOUT_MS
    )
    assert await page.locator("[data-lesson-id]").count() == 0


@pytest.mark.parametrize("width", [360, 1280])
async def test_a_full_week_fits_the_screen(
    live: LiveServer, page: Page, width: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await page.set_viewport_size({"width": width, "height": 800})
    await open_diary(page, live)
    await expect(page.locator("#subjects [data-subject-id]").first).to_be_visible()
    for summary in await page.locator("#subjects summary").all():
        await summary.click()
    overflow = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], f"horizontal overflow at {width} px: {overflow}"
    folder = os.environ.get("BROWSER_SCREENSHOTS")
    shots = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    image = await page.screenshot(path=shots / f"diary-week-{width}.png", full_page=True)
    assert image.startswith(b"\x89PNG")
    assert demo_account(PARENT).full_name in await page.locator("[data-viewer-name]").inner_text()


ATTENDANCE = """query DiaryAttendanceProbe($student: ID!, $from: Date!, $to: Date!) {
  student(id: $student) {
    diary(from: $from, to: $to) {
      attendance { lessonId date code minutesLate }
    }
  }
}"""
MEANINGS = {
    "Н": "отсутствие на уроке",
    "Б": "отсутствие по болезни",
    "У": "отсутствие по уважительной причине",
    "П": "отсутствие по уважительной причине",
    "О": "опоздание",
    "ОП": "опоздание",
}


async def test_attendance_codes_are_shown_with_their_meaning(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    found = []
    months = [("2026-09-01", "2026-09-30"), ("2026-10-01", "2026-10-31")]
    for child, (first, last) in [(c, m) for c in await children(gql) for m in months]:
        variables = {"student": child["id"], "from": first, "to": last}
        answer = await gql(ATTENDANCE, variables, account=PARENT)
        assert "errors" not in answer, answer
        found += [(child, r) for r in answer["data"]["student"]["diary"]["attendance"]]
    assert found, "the family has attendance records in the data set"
    child, record = found[0]
    day = date.fromisoformat(record["date"])
    monday = (day - timedelta(days=day.weekday())).isoformat()
    await open_diary(page, live)
    await page.goto(f"{live.url}/diary?child={child['id']}&week={monday}")
    lesson = page.locator(f'[data-lesson-id="{record["lessonId"]}"] .attendance')
    expected = f"{record['code']} — {MEANINGS[record['code']]}"
    await expect(lesson).to_contain_text(expected, timeout=LOAD_TIMEOUT_MS)
    if record["minutesLate"]:
        await expect(lesson).to_contain_text(f"{record['minutesLate']} мин.")
    legend = page.locator("#legend dt")
    await expect(legend).to_have_text(list(MEANINGS))


async def test_a_student_reads_their_own_week(live: LiveServer, page: Page, gql: GraphQL) -> None:
    await password_sign_in(page, live, STUDENT_PASSWORD)
    await expect(page).to_have_url(f"{live.url}/diary")
    await expect(page.locator("#days .day")).to_have_count(7, timeout=LOAD_TIMEOUT_MS)
    me = (await children(gql, "student-young"))[0]
    await expect(page.get_by_role("navigation", name="Ученик")).to_contain_text(me["fullName"])
    week = (await api(gql, "DiaryWeek", {"student": me["id"]}, "student-young"))["student"]
    assert week["diary"]["from"] == WEEK
    await check_week(page, week)


async def test_the_week_and_an_explanation_work_from_the_keyboard(
    live: LiveServer, page: Page
) -> None:
    await open_diary(page, live)
    await page.get_by_role("link", name="Следующая").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#days .day").first).to_have_attribute("data-date", NEXT_WEEK)
    # The links stay in place, so the focus does too: Enter again goes one more week.
    assert await page.evaluate("document.activeElement.id") == "week-next"
    await page.keyboard.press("Enter")
    await expect(page.locator("#days .day").first).to_have_attribute("data-date", "2026-12-07")
    summary = page.locator("#subjects summary").first
    await summary.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#subjects details").first).to_have_attribute("open", "")
    await expect(page.locator("#subjects .formula").first).to_be_visible()


async def test_a_revoked_session_goes_to_sign_in(
    live: LiveServer, page: Page, pool: asyncpg.Pool
) -> None:
    """The cookie is still sent but its session has ended (signed out elsewhere): 401."""
    await open_diary(page, live)
    cookie = next(c["value"] for c in await page.context.cookies() if c["name"] == "sg_session")
    session = cookie_session_id(live.settings, cookie)
    assert session is not None and await revoke_session(pool, session) is not None
    await page.get_by_role("link", name="Предыдущая").click()
    await expect(page).to_have_url(re.compile(r"/auth/login\?return_to=%2Fdiary"))
    await expect(page.locator("#login")).to_be_visible()
