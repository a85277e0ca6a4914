"""Helpers of the school dashboard tests: the demo admin's school, asking the dashboard."""

from __future__ import annotations

from typing import Any

import asyncpg

from fixtures.demo import demo_account
from tests.support.environment import GraphQL

ADMIN = "school-admin"


async def admin_school_id(owner_conn: asyncpg.Connection) -> int:
    """The school the demo admin administers (index 0 of the data set), from the tables."""
    value = await owner_conn.fetchval(
        "SELECT school_id FROM school.staff WHERE snils = $1 AND role = 'it_admin'",
        demo_account(ADMIN).snils,
    )
    assert isinstance(value, int)
    return value


async def other_school_id(owner_conn: asyncpg.Connection, school_id: int) -> int:
    """Some other school of the data set (the lowest id that is not `school_id`)."""
    value = await owner_conn.fetchval(
        "SELECT min(id) FROM school.schools WHERE id <> $1", school_id
    )
    assert isinstance(value, int)
    return value


def dashboard_query(section: str, arguments: str = "") -> str:
    """A schoolDashboard query with `section` selected; variables schoolId, from, to."""
    return f"""
    query Dash($schoolId: ID!, $from: Date, $to: Date) {{
      schoolDashboard(schoolId: $schoolId, from: $from, to: $to) {{
        school {{ id name }} from to today
        {section}
      }}
    }}"""


async def ask(
    gql: GraphQL,
    query: str,
    school_id: int | str,
    *,
    account: str | None = ADMIN,
    date_from: str | None = None,
    date_to: str | None = None,
    **variables: Any,
) -> dict[str, Any]:
    """POST the query as `account`; the whole JSON body."""
    values: dict[str, Any] = {"schoolId": str(school_id), "from": date_from, "to": date_to}
    values.update(variables)
    return await gql(query, values, account=account)
