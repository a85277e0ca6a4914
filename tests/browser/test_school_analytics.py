"""The staff pages in a real Chromium: the school IT admin's dashboard (/school) and the
regional analyst's aggregates (/analytics) show what the API answers for the same
questions; other roles are sent to their own page and see none of it; both pages fit a
360 px phone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.test_pages import LOAD_TIMEOUT_MS, esia_sign_in
from tests.support.environment import GraphQL
from tests.support.live_server import LiveServer

JOURNAL = """query Journal($schoolId: ID!, $sortBy: JournalSortField!, $direction: SortDirection!,
                $from: Date, $to: Date) {
  schoolDashboard(schoolId: $schoolId, from: $from, to: $to) {
    from to today
    school { name }
    journal(sortBy: $sortBy, direction: $direction) {
      rows { teacher { name } schoolClass { name } subject { name }
             lessonsHeld lessonsWithTopic lessonsWithAttendance lessonsWithHomework
             lessonsWithMarks pastLessonsEmpty }
      totals { rows lessonsHeld lessonsWithTopic lessonsWithAttendance lessonsWithHomework
               lessonsWithMarks pastLessonsEmpty }
    }
    registry { parentRecords parentsWithoutSnils studentsWithoutParents }
  }
}"""
COUNTS = (
    "lessonsHeld",
    "lessonsWithTopic",
    "lessonsWithAttendance",
    "lessonsWithHomework",
    "lessonsWithMarks",
    "pastLessonsEmpty",
)
# The journal table as shown: per body row its three names and six counts.
READ_JOURNAL = """() => [...document.querySelectorAll('#journal-table tbody tr')].map((tr) => [
  ...[...tr.cells].slice(0, 3).map((cell) => cell.textContent.trim()),
  ...[...tr.querySelectorAll('.count')].map((span) => Number(span.textContent)),
])"""
READ_TOTALS = """() => [...document.querySelectorAll('#journal-table tfoot .count')]
  .map((span) => Number(span.textContent))"""
NO_OVERFLOW = "[document.documentElement.scrollWidth, window.innerWidth]"


def journal_rows(journal: dict[str, Any]) -> list[list[Any]]:
    return [
        [row["teacher"]["name"], row["schoolClass"]["name"], row["subject"]["name"]]
        + [row[name] for name in COUNTS]
        for row in journal["rows"]
    ]


async def api_journal(
    gql: GraphQL, school_id: str, sort_by: str, direction: str, **window: str
) -> dict[str, Any]:
    """The journal as the API sorts it (`window`: `from` and `to`, else the current week)."""
    variables = {"schoolId": school_id, "sortBy": sort_by, "direction": direction, **window}
    payload = await gql(JOURNAL, variables, account="school-admin")
    assert "errors" not in payload, payload
    dashboard: dict[str, Any] = payload["data"]["schoolDashboard"]
    return dashboard


async def admin_school(gql: GraphQL) -> str:
    payload = await gql("{ viewer { schools { id } } }", account="school-admin")
    (school,) = payload["data"]["viewer"]["schools"]
    school_id: str = school["id"]
    return school_id


async def open_school_page(page: Page, live: LiveServer) -> None:
    await esia_sign_in(page, live, "school-admin")
    await expect(page).to_have_url(f"{live.url}/school")
    await expect(page.locator("#journal-table tbody tr").first).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )


def sorted_header(page: Page, title: str) -> Any:
    return page.locator("#journal-table thead th").filter(has_text=title)


async def test_the_school_admin_sees_the_journal_of_their_school_and_sorts_it(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_school_page(page, live)
    school_id = await admin_school(gql)
    default = await api_journal(gql, school_id, "PAST_LESSONS_EMPTY", "DESC")
    await expect(page.locator("#school-name")).to_contain_text(default["school"]["name"])
    shown = await page.evaluate(READ_JOURNAL)
    assert len(shown) > 10 and shown == journal_rows(default["journal"])
    totals = default["journal"]["totals"]
    assert await page.evaluate(READ_TOTALS) == [totals[name] for name in COUNTS]
    await expect(sorted_header(page, "Пустые прошедшие")).to_have_attribute(
        "aria-sort", "descending"
    )
    registry = page.locator("#registry-counts")
    await expect(registry).to_contain_text(
        f"Записей родителей{default['registry']['parentRecords']}"
    )

    # Sorting by teacher: the gateway's order (ties by class and subject), A→Я first.
    await sorted_header(page, "Учитель").get_by_role("button").click()
    header = sorted_header(page, "Учитель")
    await expect(header).to_have_attribute("aria-sort", "ascending")
    await expect(sorted_header(page, "Пустые прошедшие")).not_to_have_attribute(
        "aria-sort", "descending"
    )
    by_teacher = journal_rows((await api_journal(gql, school_id, "TEACHER", "ASC"))["journal"])
    await expect(page.locator("#journal-table")).not_to_have_attribute("aria-busy", "true")
    resorted = await page.evaluate(READ_JOURNAL)
    assert resorted == by_teacher and resorted != shown
    assert sorted(resorted) == sorted(shown)  # the same rows, reordered
    # Again from the keyboard: the other direction.
    await header.get_by_role("button").focus()
    await page.keyboard.press("Enter")
    await expect(header).to_have_attribute("aria-sort", "descending")
    await expect(page.locator("#journal-table")).not_to_have_attribute("aria-busy", "true")
    backwards = journal_rows((await api_journal(gql, school_id, "TEACHER", "DESC"))["journal"])
    assert await page.evaluate(READ_JOURNAL) == backwards


async def test_the_school_year_window_shows_the_apis_figures_for_it(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_school_page(page, live)
    school_id = await admin_school(gql)
    week = await api_journal(gql, school_id, "PAST_LESSONS_EMPTY", "DESC")
    today = week["today"]
    year = f"{int(today[:4]) - (today[5:7] < '09')}-09-01"
    await page.get_by_label("Период").select_option("year")
    await expect(page.locator("#journal-table caption")).to_contain_text("1 сентября")
    await expect(page.locator("#journal-table")).not_to_have_attribute("aria-busy", "true")
    window = {"from": year, "to": today}
    whole = await api_journal(gql, school_id, "PAST_LESSONS_EMPTY", "DESC", **window)
    totals = whole["journal"]["totals"]
    assert totals["lessonsHeld"] > week["journal"]["totals"]["lessonsHeld"]
    assert await page.evaluate(READ_TOTALS) == [totals[name] for name in COUNTS]
    assert await page.evaluate(READ_JOURNAL) == journal_rows(whole["journal"])


async def screenshot(page: Page, name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = os.environ.get("BROWSER_SCREENSHOTS")
    shots = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    image = await page.screenshot(path=shots / name, full_page=True)
    assert image.startswith(b"\x89PNG")


@pytest.mark.parametrize("width", [360, 1280])
async def test_the_school_page_fits_the_screen(
    live: LiveServer, page: Page, width: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await page.set_viewport_size({"width": width, "height": 800})
    await open_school_page(page, live)
    await expect(page.locator("#registry-counts")).to_be_visible()
    overflow = await page.evaluate(NO_OVERFLOW)
    assert overflow[0] <= overflow[1], f"horizontal overflow at {width} px: {overflow}"
    await screenshot(page, f"school-{width}.png", tmp_path_factory)


# --- the regional analyst's page ------------------------------------------------------

MARKS = """query Marks($groupBy: [MarkDimension!]!) { regionalAnalytics { minGroupSize
  marks(groupBy: $groupBy) {
    groups { key { municipality { name } } suppressed markCount weightedAverage }
    total { markCount weightedAverage } } } }"""
ATTENDANCE = """query Attendance($groupBy: [AttendanceDimension!]!) { regionalAnalytics {
  minGroupSize attendance(groupBy: $groupBy) {
    groups { key { period { title yearTitle } grade subject { name } } suppressed records }
    spanning { records } attributedShare } } }"""
# Groupings of attendance by code where the test data has groups without a unit of their
# own (each grouping alone has none at k = 10): the first one that does is used.
SUPPRESSING = (("period", "PERIOD"), ("grade", "GRADE"), ("subject", "SUBJECT"))
# The table as shown: per body row its class, its cells' texts.
READ_GROUPS = """() => [...document.querySelectorAll('#groups tbody tr')].map((tr) => [
  tr.className, ...[...tr.cells].map((cell) => cell.textContent.trim())])"""


def digits(text: str) -> int:
    """A figure as the page writes it («58 455», grouped with non-breaking spaces)."""
    return int("".join(ch for ch in text if ch.isdigit()))


def decimal(text: str) -> float:
    return float(text.replace(",", "."))


async def open_analytics_page(page: Page, live: LiveServer) -> None:
    await esia_sign_in(page, live, "regional-analyst")
    await expect(page).to_have_url(f"{live.url}/analytics")
    await expect(page.locator("#groups tbody tr").first).to_be_visible(timeout=LOAD_TIMEOUT_MS)


async def test_the_analyst_sees_groups_and_a_chart_equal_to_the_api(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    await open_analytics_page(page, live)
    payload = await gql(MARKS, {"groupBy": ["MUNICIPALITY"]}, account="regional-analyst")
    marks = payload["data"]["regionalAnalytics"]["marks"]
    shown = await page.evaluate(READ_GROUPS)
    expected = [
        ["", group["key"]["municipality"]["name"], group["markCount"], group["weightedAverage"]]
        for group in marks["groups"]
    ]
    assert len(expected) >= 2
    assert [[cls, name, digits(count), decimal(avg)] for cls, name, count, avg in shown] == expected
    total = await page.locator("#groups tfoot td").all_inner_texts()
    assert [digits(total[0]), decimal(total[1])] == [
        marks["total"]["markCount"],
        marks["total"]["weightedAverage"],
    ]
    bars = page.locator("#chart > li")
    await expect(bars).to_have_count(len(expected))
    await expect(bars.locator("svg rect.bar-fill")).to_have_count(len(expected))
    first = expected[0]
    await expect(bars.first).to_contain_text(f"{first[1]}")
    await expect(bars.first.locator("text")).to_have_text(f"{first[3]:.2f}".replace(".", ","))
    await expect(page.locator("#freshness")).to_contain_text("Данные обновлены")


async def suppressing_grouping(gql: GraphQL) -> tuple[str, dict[str, Any]]:
    """The first of SUPPRESSING whose groups (by it and by code) include a suppressed one:
    its id on the page and the API's answer."""
    for chosen, dimension in SUPPRESSING:
        variables = {"groupBy": [dimension, "CODE"]}
        payload = await gql(ATTENDANCE, variables, account="regional-analyst")
        answer: dict[str, Any] = payload["data"]["regionalAnalytics"]
        if any(group["suppressed"] for group in answer["attendance"]["groups"]):
            return chosen, answer
    raise AssertionError("no grouping of SUPPRESSING has a suppressed group in the test data")


async def test_a_suppressed_group_is_shown_as_such(
    live: LiveServer, page: Page, gql: GraphQL
) -> None:
    chosen, answer = await suppressing_grouping(gql)
    groups = answer["attendance"]["groups"]
    hidden = [index for index, group in enumerate(groups) if group["suppressed"]]
    assert hidden, "the test data has a suppressed group in one of the groupings"
    k = answer["minGroupSize"]

    await open_analytics_page(page, live)
    await page.get_by_label("Посещаемость").check()
    await page.get_by_label("Группировка").select_option(chosen)
    await page.get_by_label("и ещё по").select_option("kind")
    await page.get_by_role("button", name="Показать").click()
    await expect(page).to_have_url(f"{live.url}/analytics?metric=attendance&by={chosen}&then=kind")
    await expect(page.locator("#groups tbody tr.suppressed").first).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    shown = await page.evaluate(READ_GROUPS)
    spanning = answer["attendance"]["spanning"]
    assert len(shown) == len(groups) + (spanning is not None)
    note = f"скрыто: меньше {k} учеников"
    for index, group in enumerate(groups):
        row = shown[index]
        if group["suppressed"]:
            assert row[0] == "suppressed" and row[-1] == note, row
        else:
            assert row[0] == "" and digits(row[-2]) == group["records"], row
    rows = page.locator("#chart > li")
    await expect(rows).to_have_count(len(groups))
    await expect(page.locator("#chart > li.suppressed")).to_have_count(len(hidden))
    await expect(rows.nth(hidden[0]).locator("text")).to_have_text(note)
    await expect(rows.nth(hidden[0]).locator("rect.bar-fill")).to_have_count(0)
    # `spanning` and `attributedShare` explained in one line, with the API's figures.
    if spanning is not None:
        line = page.locator("#note-spanning")
        share = f"{answer['attendance']['attributedShare'] * 100:.2f}".rstrip("0").rstrip(".")
        await expect(line).to_contain_text(f"{share.replace('.', ',')}")
        await expect(line).to_contain_text("вне групп")
        assert (
            digits((await line.inner_text()).split("остальные", 1)[1].split("—")[0])
            == (spanning["records"])
        )


# --- other roles ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/school", "/analytics"])
async def test_a_parent_is_sent_to_the_diary_and_sees_no_staff_data(
    live: LiveServer, page: Page, path: str
) -> None:
    staff_calls: list[str] = []
    page.on(
        "request",
        lambda request: (
            staff_calls.append(request.post_data or "")
            if request.url == f"{live.url}/graphql"
            and any(name in (request.post_data or "") for name in ("School", "Analytics"))
            else None
        ),
    )
    await esia_sign_in(page, live, "parent-two-schools")
    await expect(page).to_have_url(f"{live.url}/diary")
    await expect(page.locator("#children > li")).to_have_count(2, timeout=LOAD_TIMEOUT_MS)
    await page.goto(f"{live.url}{path}")
    await expect(page).to_have_url(f"{live.url}/diary")
    await expect(page.locator("#children > li")).to_have_count(2, timeout=LOAD_TIMEOUT_MS)
    content = await page.content()
    for private in ("Полнота журнала", "Реестр родителей", "Аналитика региона", "скрыто:"):
        assert private not in content
    assert await page.locator("#journal-table, #groups").count() == 0
    assert staff_calls == []


@pytest.mark.parametrize("width", [360, 1280])
async def test_the_analytics_page_fits_the_screen(
    live: LiveServer, page: Page, width: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await page.set_viewport_size({"width": width, "height": 800})
    await open_analytics_page(page, live)
    await page.goto(f"{live.url}/analytics?metric=attendance&by=subject&then=kind")
    await expect(page.locator("#chart > li").first).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    overflow = await page.evaluate(NO_OVERFLOW)
    assert overflow[0] <= overflow[1], f"horizontal overflow at {width} px: {overflow}"
    await screenshot(page, f"analytics-{width}.png", tmp_path_factory)
