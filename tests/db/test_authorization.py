"""Authorization: nobody reads another family's child, by any path; roles and anonymity.

Two layers are tested: the field permissions (errors with FORBIDDEN / UNAUTHENTICATED and
no data) and the data layer (a loader called with an id outside the viewer's scope
raises before any SQL is sent).
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import httpx
import pytest
import strawberry

from auth.permissions import CanSeeStudent, IsAuthenticated, IsFamilyMember
from auth.store.accounts import ensure_demo_account, load_viewer
from auth.viewer import Role, Viewer
from fixtures.demo import DEMO_ACCOUNTS, demo_account
from gateway.core.db import counting_statements
from gateway.core.errors import BadUserInputError, ForbiddenError, UnauthenticatedError
from resolvers.diary.loaders import Loaders
from resolvers.diary.reference import ReferenceCache
from resolvers.diary.sql import MarksFilter, StudentRange
from tests.support.environment import TODAY, GraphQL
from tests.support.journal import family_student_ids
from tests.support.planted import error_codes, post_graphql

ATTACKER = "parent-one-school"
# Views holding children's data (the viewer lookup reads only parent_links and staff).
JOURNAL_VIEWS = tuple(
    f"diary_api.{view}"
    for view in (
        "students ",
        "lessons",
        "marks",
        "homework",
        "attendance",
        "periods",
        "final_marks",
    )
)
VICTIM_FAMILY = "parent-two-schools"

# Every field of Student that reaches the journal, each under a path of its own.
STUDENT_DATA = """
  id lastName fullName school { name } schoolClass { name }
  diary { lessons { id topic marks { value } homework { text } attendance { code } }
          marks { value } homework { text } attendance { code } days { date } lastUpdatedAt }
  periods { title }
  finalMarks { value }
  averages { weightedAverage contributions { mark { value } } }
  marks(first: 5) { value }
  lastUpdatedAt
"""

# Ways of asking for one student by id: $id is the victim's id.
PATHS: dict[str, str] = {
    "literal": '{ student(id: "VICTIM") { id fullName } }',
    "variable": "query($id: ID!) { student(id: $id) { id fullName } }",
    "alias": "query($id: ID!) { mine: viewer { role } theirs: student(id: $id) { id } }",
    "many aliases": (
        "query($id: ID!) { a: student(id: $id) { id } b: student(id: $id) { fullName } }"
    ),
    "fragment": (
        "query($id: ID!) { student(id: $id) { ...S } } fragment S on Student { id fullName }"
    ),
    "inline fragment": "query($id: ID!) { student(id: $id) { ... on Student { id fullName } } }",
    "nested fragments": (
        "query($id: ID!) { student(id: $id) { ...A } } "
        "fragment A on Student { diary { ...B } } fragment B on Diary { marks { value } }"
    ),
    "every student field": f"query($id: ID!) {{ student(id: $id) {{ {STUDENT_DATA} }} }}",
    "diary": 'query($id: ID!) { student(id: $id) { diary(from: "2026-11-01", to: "2026-11-29") '
    "{ lessons { id } } } }",
    "marks": "query($id: ID!) { student(id: $id) { marks(first: 500) { id value } } }",
    "averages": "query($id: ID!) { student(id: $id) { averages { weightedAverage } } }",
    "final marks": "query($id: ID!) { student(id: $id) { finalMarks { value } } }",
    "periods": "query($id: ID!) { student(id: $id) { periods { title } } }",
    "last updated": "query($id: ID!) { student(id: $id) { lastUpdatedAt } }",
    "typename only": "query($id: ID!) { student(id: $id) { __typename } }",
    "include directive": (
        "query($id: ID!, $yes: Boolean = true) { student(id: $id) @include(if: $yes) { id } }"
    ),
}


async def victim_ids(owner_conn: asyncpg.Connection) -> list[int]:
    return await family_student_ids(owner_conn, VICTIM_FAMILY)


def leaked(payload: dict[str, Any], secret: str) -> bool:
    """True if a string that identifies the victim appears anywhere in the response."""
    return secret in json.dumps(payload.get("data"), ensure_ascii=False)


def student_values(data: Any) -> list[Any]:
    """Every value the response holds under a `student`-like key (aliases included)."""
    if not isinstance(data, dict):
        return []
    return [value for key, value in data.items() if key not in ("mine",)]


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_another_familys_child_is_forbidden_by_every_path(
    gql: GraphQL, owner_conn: asyncpg.Connection, path: str
) -> None:
    for victim in await victim_ids(owner_conn):
        query = PATHS[path].replace("VICTIM", str(victim))
        variables = None if path == "literal" else {"id": str(victim)}
        payload = await gql(query, variables, account=ATTACKER)
        codes = error_codes(payload)
        assert codes and set(codes) == {"FORBIDDEN"}, payload
        assert all(value is None for value in student_values(payload["data"])), payload
        last_name = await owner_conn.fetchval(
            "SELECT last_name FROM school.students WHERE id = $1", victim
        )
        assert not leaked(payload, last_name)
        if path == "alias":
            assert payload["data"]["mine"] == {"role": "PARENT"}


async def test_own_and_foreign_child_in_one_request(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    (own, *_) = await family_student_ids(owner_conn, ATTACKER)
    (victim, *_) = await victim_ids(owner_conn)
    payload = await gql(
        f"query($own: ID!, $victim: ID!) {{ own: student(id: $own) {{ {STUDENT_DATA} }} "
        f"victim: student(id: $victim) {{ {STUDENT_DATA} }} }}",
        {"own": str(own), "victim": str(victim)},
        account=ATTACKER,
    )
    assert error_codes(payload) == ["FORBIDDEN"]
    assert payload["errors"][0]["path"] == ["victim"]
    assert payload["data"]["victim"] is None
    assert payload["data"]["own"]["id"] == str(own)
    assert payload["data"]["own"]["diary"]["lessons"]


async def test_ids_that_do_not_exist_look_the_same_as_foreign_ones(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    (victim, *_) = await victim_ids(owner_conn)
    missing_id = await owner_conn.fetchval("SELECT max(id) + 1 FROM school.students")
    query = "query($id: ID!) { student(id: $id) { id } }"
    foreign = await gql(query, {"id": str(victim)}, account=ATTACKER)
    missing = await gql(query, {"id": str(missing_id)}, account=ATTACKER)
    assert foreign == missing
    assert error_codes(foreign) == ["FORBIDDEN"]


@pytest.mark.parametrize("bad_id", ["abc", "-1", "0", "1e3", " 1", "１", "99999999999", ""])
async def test_malformed_ids_are_bad_input(gql: GraphQL, bad_id: str) -> None:
    payload = await gql(
        "query($id: ID!) { student(id: $id) { id } }", {"id": bad_id}, account=ATTACKER
    )
    assert error_codes(payload) == ["BAD_USER_INPUT"]
    assert payload["data"] == {"student": None}


# --- every role --------------------------------------------------------------------------

FAMILY_QUERY = "{ viewer { id role displayName } myChildren { id fullName } }"


@pytest.mark.parametrize(
    "account", ["parent-one-school", "parent-two-schools", "student-young", "student-older"]
)
async def test_family_roles_see_exactly_their_scope(
    gql: GraphQL, owner_conn: asyncpg.Connection, account: str
) -> None:
    payload = await gql(FAMILY_QUERY, account=account)
    assert "errors" not in payload, payload
    expected = await family_student_ids(owner_conn, account)
    assert sorted(int(child["id"]) for child in payload["data"]["myChildren"]) == expected
    assert payload["data"]["viewer"]["role"] == demo_account(account).role
    assert payload["data"]["viewer"]["displayName"] == demo_account(account).full_name
    # Everyone else's children (of every other demo family) are forbidden.
    others = {
        sid
        for other in ("parent-one-school", "parent-two-schools")
        for sid in await family_student_ids(owner_conn, other)
    } - set(expected)
    assert others
    for student_id in sorted(others):
        denied = await gql(
            "query($id: ID!) { student(id: $id) { id diary { marks { value } } } }",
            {"id": str(student_id)},
            account=account,
        )
        assert error_codes(denied) == ["FORBIDDEN"]
        assert denied["data"] == {"student": None}
    for student_id in expected:
        allowed = await gql(
            "query($id: ID!) { student(id: $id) { id } }", {"id": str(student_id)}, account=account
        )
        assert allowed == {"data": {"student": {"id": str(student_id)}}}


async def test_student_cannot_see_their_sibling(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    (young,) = await family_student_ids(owner_conn, "student-young")
    siblings = set(await family_student_ids(owner_conn, "parent-one-school")) - {young}
    assert siblings
    for sibling in siblings:
        payload = await gql(
            "query($id: ID!) { student(id: $id) { id } }",
            {"id": str(sibling)},
            account="student-young",
        )
        assert error_codes(payload) == ["FORBIDDEN"]


async def test_unregistered_parent_sees_nobody(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    payload = await gql(FAMILY_QUERY, account="parent-unregistered")
    assert payload["data"]["myChildren"] == []
    (victim, *_) = await victim_ids(owner_conn)
    denied = await gql(f'{{ student(id: "{victim}") {{ id }} }}', account="parent-unregistered")
    assert error_codes(denied) == ["FORBIDDEN"]


@pytest.mark.parametrize(
    ("account", "role"),
    [("school-admin", "SCHOOL_ADMIN"), ("regional-analyst", "REGIONAL_ANALYST")],
)
async def test_staff_roles_get_no_childrens_data(
    gql: GraphQL, owner_conn: asyncpg.Connection, account: str, role: str
) -> None:
    viewer = await gql("{ viewer { role displayName } }", account=account)
    assert viewer == {
        "data": {"viewer": {"role": role, "displayName": demo_account(account).full_name}}
    }
    children = await gql("{ myChildren { id } }", account=account)
    assert error_codes(children) == ["FORBIDDEN"]
    assert children["data"] is None
    (victim, *_) = await victim_ids(owner_conn)
    student = await gql(
        f'{{ student(id: "{victim}") {{ id diary {{ lessons {{ id }} }} }} }}', account=account
    )
    assert error_codes(student) == ["FORBIDDEN"]
    assert student["data"] == {"student": None}


@pytest.mark.parametrize(
    "query",
    [
        "{ viewer { id } }",
        "{ myChildren { id } }",
        '{ student(id: "1") { id } }',
        '{ a: viewer { id } b: student(id: "1") { diary { marks { value } } } }',
    ],
)
async def test_anonymous_requests_are_unauthenticated(gql: GraphQL, query: str) -> None:
    payload = await gql(query)
    codes = error_codes(payload)
    assert codes and set(codes) == {"UNAUTHENTICATED"}
    assert payload["data"] is None or all(value is None for value in payload["data"].values())


def test_every_demo_account_is_covered() -> None:
    covered = {
        "parent-one-school",
        "parent-two-schools",
        "student-young",
        "student-older",
        "parent-unregistered",
        "school-admin",
        "regional-analyst",
        "parent-phone-only",  # tests/e2e/test_signin_esia.py
    }
    assert {account.key for account in DEMO_ACCOUNTS} == covered


# --- the data layer ----------------------------------------------------------------------


async def viewer_of(pool: asyncpg.Pool, account: str) -> Viewer:
    account_id = await ensure_demo_account(pool, demo_account(account))
    viewer = await load_viewer(pool, account_id)
    assert viewer is not None
    return viewer


async def test_loaders_refuse_ids_outside_the_scope(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    viewer = await viewer_of(pool, ATTACKER)
    (victim, *_) = await victim_ids(owner_conn)
    assert victim not in viewer.student_ids
    loaders = Loaders(pool, viewer, ReferenceCache())
    window = StudentRange(victim, TODAY, TODAY)
    with counting_statements() as counter:
        attempts: list[asyncio.Future[Any]] = [
            loaders.student_by_id.load(victim),
            loaders.lessons_by_student_range.load(window),
            loaders.marks_by_student_range.load(window),
            loaders.attendance_by_student_range.load(window),
            loaders.homework_by_student_range.load(window),
            loaders.mark_page_by_filter.load(MarksFilter(victim, None, None, None, 10)),
            loaders.periods_by_student.load(victim),
            loaders.final_marks_by_student.load(victim),
            loaders.last_updated_by_student.load(victim),
        ]
        for attempt in attempts:
            with pytest.raises(ForbiddenError):
                await attempt
    assert counter.count == 0, "no SQL is sent for a refused batch"


async def test_a_batch_with_one_foreign_id_is_refused_whole(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    viewer = await viewer_of(pool, ATTACKER)
    (own, *_) = sorted(viewer.student_ids)
    (victim, *_) = await victim_ids(owner_conn)
    loaders = Loaders(pool, viewer, ReferenceCache())
    own_future = loaders.student_by_id.load(own)
    victim_future = loaders.student_by_id.load(victim)
    with pytest.raises(ForbiddenError):
        await victim_future
    with pytest.raises(ForbiddenError):
        await own_future
    # A fresh batch of own ids only is served.
    record = await Loaders(pool, viewer, ReferenceCache()).student_by_id.load(own)
    assert record is not None and record.id == own


async def test_loaders_without_a_viewer_refuse_everything(pool: asyncpg.Pool) -> None:
    loaders = Loaders(pool, None, ReferenceCache())
    with pytest.raises(UnauthenticatedError):
        await loaders.student_by_id.load(1)
    staff = Viewer(
        account_id="x", role=Role.SCHOOL_ADMIN, display_name="x", student_ids=frozenset()
    )
    with pytest.raises(ForbiddenError):
        await Loaders(pool, staff, ReferenceCache()).periods_by_student.load(1)


async def test_permissions_refuse_before_any_journal_sql(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    """The first layer alone stops a foreign id: only the viewer lookup reaches the database."""
    (victim, *_) = await victim_ids(owner_conn)
    with counting_statements(keep_text=True) as counter:
        payload = await post_graphql(
            client,
            tokens[ATTACKER],
            f"query($id: ID!) {{ student(id: $id) {{ {STUDENT_DATA} }} }}",
            {"id": str(victim)},
        )
    assert error_codes(payload) == ["FORBIDDEN"]
    assert counter.statements, "the counter sees the request's statements"
    assert not [text for text in counter.statements if any(view in text for view in JOURNAL_VIEWS)]


# --- the permission classes on their own (the first layer, without the loaders) ----------


def _info(viewer: Viewer | None) -> strawberry.Info:
    """Just enough of an Info for a permission check: the context's viewer."""
    return cast(strawberry.Info, SimpleNamespace(context=SimpleNamespace(viewer=viewer)))


FAMILY_VIEWER = Viewer(
    account_id="p", role=Role.PARENT, display_name="p", student_ids=frozenset({10, 11})
)


def test_can_see_student_checks_the_argument_and_the_source() -> None:
    permission = CanSeeStudent()
    info = _info(FAMILY_VIEWER)
    assert permission.has_permission(None, info, id="10") is True
    assert permission.has_permission(None, info, id="12") is False
    assert permission.has_permission(SimpleNamespace(student_id=11), info) is True
    assert permission.has_permission(SimpleNamespace(student_id=12), info) is False
    with pytest.raises(BadUserInputError):
        permission.has_permission(None, info, id="x")
    with pytest.raises(UnauthenticatedError):
        permission.has_permission(None, _info(None), id="10")
    with pytest.raises(ForbiddenError):
        permission.on_unauthorized()


@pytest.mark.parametrize("role", list(Role))
def test_family_permission_by_role(role: Role) -> None:
    viewer = Viewer(account_id="v", role=role, display_name="v", student_ids=frozenset())
    allowed = IsFamilyMember().has_permission(None, _info(viewer))
    assert allowed is (role in (Role.PARENT, Role.STUDENT))
    assert IsAuthenticated().has_permission(None, _info(viewer)) is True
    assert IsAuthenticated().has_permission(None, _info(None)) is False
    with pytest.raises(UnauthenticatedError):
        IsAuthenticated().on_unauthorized()
