"""Query cost limits: the static estimate, per-role budgets, refusal before any SQL runs."""

from __future__ import annotations

import dataclasses
import gc
import glob
import re
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import OperationDefinitionNode, get_operation_ast
from starlette.applications import Starlette

from auth.store.clients import create_client
from auth.viewer import Role, Viewer
from gateway.app import create_app
from gateway.core.db import counting_statements
from gateway.core.graphql_internals import core_schema
from gateway.core.settings import Settings
from gateway.execution.cost import COST_CEILING, CostLimits, weights_table
from gateway.execution.limits import parse_query
from gateway.execution.schema import build_schema
from tests.support.environment import TODAY
from tests.support.planted import error_codes, post_graphql
from tests.support.statements import application_statements

ROOT = Path(__file__).resolve().parents[2]

# cost = 5 children (assumed) × (1 child + 1 diary + days × 1 day) = 5 × (2 + days)
DIARY_DAYS = """
query Days($from: Date, $to: Date) {
  myChildren { diary(from: $from, to: $to) { days { date } } }
}"""
# cost = 5 × (1 child + first × (1 mark + 1 subject)) = 5 × (1 + 2·first)
MARKS = """
query Marks($first: Int!) { myChildren { marks(first: $first) { value subject { name } } } }
"""

# Budgets of the test app: each is the cost of DIARY_DAYS over some number of days.
BUDGETS = {
    None: 20,  # 2 days
    Role.STUDENT: 45,  # 7 days
    Role.PARENT: 160,  # 30 days
    Role.SCHOOL_ADMIN: 60,  # 10 days
    Role.REGIONAL_ANALYST: 30,  # 4 days
}
ACCOUNTS = {
    None: None,
    Role.STUDENT: "student-young",
    Role.PARENT: "parent-two-schools",
    Role.SCHOOL_ADMIN: "school-admin",
    Role.REGIONAL_ANALYST: "regional-analyst",
}
# What the request gets when the budget admits it (the cost check is not the answer).
ADMITTED = {
    None: ["UNAUTHENTICATED"],
    Role.STUDENT: [],
    Role.PARENT: [],
    Role.SCHOOL_ADMIN: ["FORBIDDEN"],
    Role.REGIONAL_ANALYST: ["FORBIDDEN"],
}


def days(count: int) -> dict[str, str]:
    return {"from": (TODAY - timedelta(days=count - 1)).isoformat(), "to": TODAY.isoformat()}


def diary_cost(day_count: int) -> int:
    return 5 * (2 + day_count)


@pytest.fixture(scope="module")
def limited_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        max_cost_anonymous=BUDGETS[None],
        max_cost_student=BUDGETS[Role.STUDENT],
        max_cost_parent=BUDGETS[Role.PARENT],
        max_cost_school_admin=BUDGETS[Role.SCHOOL_ADMIN],
        max_cost_regional_analyst=BUDGETS[Role.REGIONAL_ANALYST],
    )


@pytest.fixture
async def limited(
    limited_settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    app: Starlette = create_app(limited_settings, pool=pool)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


def _estimator(settings: Settings) -> CostLimits:
    return CostLimits(core_schema(build_schema(settings)), settings)


def _operation(query: str, settings: Settings) -> tuple[Any, OperationDefinitionNode]:
    document = parse_query(query, settings)
    operation = get_operation_ast(document)
    assert operation is not None
    return document, operation


# --- the estimate -------------------------------------------------------------------------


def test_the_estimate_follows_the_documented_weights(settings: Settings) -> None:
    costs = _estimator(settings)
    document, operation = _operation(DIARY_DAYS, settings)
    assert costs.estimate(document, operation, days(1)) == diary_cost(1) == 15
    assert costs.estimate(document, operation, days(7)) == diary_cost(7)
    assert costs.estimate(document, operation, {}) == diary_cost(7)  # the current week
    assert costs.estimate(document, operation, {"from": TODAY.isoformat()}) == diary_cost(7)
    # A range longer than allowed is refused by the resolver; it costs the longest range.
    longest = settings.max_diary_days
    assert costs.estimate(document, operation, days(longest + 40)) == diary_cost(longest)
    assert costs.estimate(document, operation, {"from": "garbage"}) == diary_cost(7)
    document, operation = _operation(MARKS, settings)
    assert costs.estimate(document, operation, {"first": 10}) == 5 * (1 + 2 * 10)
    assert costs.estimate(document, operation, {"first": 100}) == 5 * (1 + 2 * 100)
    # Out of range: the resolver says LIMIT_OUT_OF_RANGE; the estimate caps at 500.
    assert costs.estimate(document, operation, {"first": 10**9}) == 5 * (1 + 2 * 500)
    assert costs.estimate(document, operation, {"first": [1, 2]}) == 5 * (1 + 2 * 50)


def test_fragments_directives_and_introspection(settings: Settings) -> None:
    costs = _estimator(settings)
    plain = "{ myChildren { school { name } periods { title } } }"
    expected = 5 * (1 + 1 + 4 * 1)
    spread = """
    query { myChildren { ...Child } }
    fragment Child on Student { school { name } ... on Student { periods { title } } }
    """
    # @skip/@include count both ways (the estimate does not depend on the condition).
    skipped = """
    query ($s: Boolean!) {
      myChildren { school @skip(if: $s) { name } periods @include(if: false) { title } }
    }"""
    for query in (plain, spread, skipped):
        document, operation = _operation(query, settings)
        assert costs.estimate(document, operation, {"s": True}) == expected, query
    document, operation = _operation(
        "{ __schema { types { name fields { name args { name } } } } __typename }", settings
    )
    assert costs.estimate(document, operation, None) == 0
    # Aliases are separate fields: twice the cost.
    document, operation = _operation(
        "{ a: myChildren { school { name } } b: myChildren { school { name } } }", settings
    )
    assert costs.estimate(document, operation, None) == 2 * 5 * 2


def test_default_budgets_admit_the_readme_and_bench_queries(settings: Settings) -> None:
    costs = _estimator(settings)
    week = {"from": "2026-11-23", "to": "2026-11-29"}
    year = {"studentId": "1", "from": "2025-09-01", "to": "2026-08-31"}
    checked = 0
    for path in sorted(glob.glob(str(ROOT / "bench" / "queries" / "*.gateway.graphql"))):
        document, operation = _operation(Path(path).read_text(encoding="utf-8"), settings)
        role = Role.PARENT if "parent" in path else Role.STUDENT
        variables = {**week, "studentId": "1", "periodId": "1"} if "week" in path else year
        cost = costs.estimate(document, operation, variables)
        assert cost <= costs.budgets[role], (path, cost)
        checked += 1
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```graphql\n(.*?)```", readme, flags=re.S):
        document, operation = _operation(block, settings)
        for longest in (days(1), days(settings.max_diary_days), {}):
            cost = costs.estimate(document, operation, longest)
            assert cost <= costs.budgets[Role.PARENT], cost
            checked += 1
    assert checked >= 4
    # The anonymous budget is the smallest.
    assert costs.budgets[None] == min(costs.budgets.values())


def test_the_weights_table_lists_lists_and_objects(settings: Settings) -> None:
    table = {
        name: (weight, bound)
        for name, weight, bound in weights_table(core_schema(build_schema(settings)))
    }
    assert table["Query.myChildren"] == ("1", "assumed 5")
    assert table["Student.marks"] == ("1", "`first` (≤ 500)")
    assert table["Diary.lessons"][1].startswith("8 × window days")
    assert "Student.fullName" not in table  # a scalar: free


def test_estimates_are_cached_per_operation(settings: Settings) -> None:
    costs = _estimator(settings)
    document, operation = _operation(DIARY_DAYS, settings)
    first = costs._plan(document, operation)
    assert costs._plan(document, operation) is not None
    assert costs._plan(document, operation)[0] is first[0]
    costs.estimate(document, operation, days(3))
    start, end = (date.fromisoformat(value) for value in days(3).values())
    assert costs._plan(document, operation)[1] == {(start, end): diary_cost(3)}


def test_the_memo_keeps_normal_forms_not_what_the_client_sent(settings: Settings) -> None:
    costs = _estimator(settings)
    document, operation = _operation(MARKS, settings)
    huge = "x" * 1_000_000
    for value in (huge, [huge], {"a": huge}, 10**30, 12, True):
        costs.estimate(document, operation, {"first": value})
    memo = costs._plan(document, operation)[1]
    assert len(memo) == 3  # "other", the capped count and 12
    assert all(len(repr(key)) < 100 for key in memo), memo


def test_plans_live_as_long_as_their_operation(settings: Settings) -> None:
    costs = _estimator(settings)
    document, operation = _operation(DIARY_DAYS, settings)
    costs.estimate(document, operation, days(3))
    assert len(costs._plans) == 1
    del document, operation
    gc.collect()
    assert len(costs._plans) == 0, "the plan cache keeps no document alive"


def _doubling_fragments(levels: int, leaf: str) -> str:
    """`query { ...F0 }`, each fragment spreading the next one twice (issue 9, item 1)."""
    spreads = [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)]
    return "\n".join(["query { ...F0 }", *spreads, f"fragment F{levels} on Query {{ {leaf} }}"])


def test_fragments_spread_twice_at_every_level_cost_linear_work(settings: Settings) -> None:
    costs = _estimator(settings)
    cpu: dict[int, float] = {}
    for levels in (20, 40, 190):
        document, operation = _operation(_doubling_fragments(levels, "viewer { id }"), settings)
        started = time.process_time()
        cost = costs.estimate(document, operation, None)
        cpu[levels] = time.process_time() - started
        # Before: 2^levels work (20 levels ~0.3 s, 40 levels years); now a few ms at most.
        assert cpu[levels] < 0.05, cpu
        assert cost == min(2**levels, COST_CEILING)  # every spread counts, saturated
        document, operation = _operation(_doubling_fragments(levels, "__typename"), settings)
        assert costs.estimate(document, operation, None) == 0
    print(f"cost estimate CPU by levels: { {n: f'{t * 1000:.2f} ms' for n, t in cpu.items()} }")


# --- over HTTP, per role ---------------------------------------------------------------


@pytest.mark.parametrize("role", list(BUDGETS), ids=lambda role: getattr(role, "value", "ANON"))
async def test_each_role_has_its_budget(
    role: Role | None, limited: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    account = ACCOUNTS[role]
    token = tokens[account] if account is not None else None
    budget = BUDGETS[role]
    at_budget = budget // 5 - 2
    assert diary_cost(at_budget) == budget
    admitted = await post_graphql(limited, token, DIARY_DAYS, days(at_budget))
    assert error_codes(admitted) == ADMITTED[role], admitted
    refused = await post_graphql(limited, token, DIARY_DAYS, days(at_budget + 1))
    assert "data" not in refused
    [error] = refused["errors"]
    assert error["extensions"] == {
        "code": "QUERY_TOO_COSTLY",
        "cost": diary_cost(at_budget + 1),
        "maxCost": budget,
    }
    assert "Стоимость" in error["message"]


async def test_a_machine_client_has_its_roles_budget(
    limited: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    created = await create_client(pool, name="cost test", role=Role.REGIONAL_ANALYST)
    response = await limited.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created.client.client_id, created.secret),
    )
    token = response.json()["access_token"]
    refused = await post_graphql(limited, token, DIARY_DAYS, days(5))
    assert refused["errors"][0]["extensions"]["maxCost"] == BUDGETS[Role.REGIONAL_ANALYST]


async def test_refused_before_any_sql_runs(
    limited: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    token = tokens["parent-two-schools"]
    await post_graphql(limited, token, "{ viewer { id } }")  # warm the connection
    with counting_statements(keep_text=True) as counter:
        refused = await post_graphql(limited, token, DIARY_DAYS, days(31))
    assert error_codes(refused) == ["QUERY_TOO_COSTLY"]
    statements = application_statements(counter)
    # Only the viewer (its session and scope) was read; no diary, no version check.
    assert len(statements) == 1 and "gateway.sessions" in statements[0], statements
    with counting_statements(keep_text=True) as counter:
        anonymous = await post_graphql(limited, None, DIARY_DAYS, days(5))
    assert error_codes(anonymous) == ["QUERY_TOO_COSTLY"]
    assert application_statements(counter) == []


async def test_variables_change_the_cost_and_status_follows_the_media_type(
    limited: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    token = tokens["student-young"]  # budget 45 = 5 × (1 + 2·4): first ≤ 4 passes
    small = await post_graphql(limited, token, MARKS, {"first": 4})
    assert "errors" not in small and small["data"]["myChildren"]
    big = await post_graphql(limited, token, MARKS, {"first": 5})
    assert big["errors"][0]["extensions"]["cost"] == 5 * (1 + 2 * 5)
    response = await limited.post(
        "/graphql",
        json={"query": MARKS, "variables": {"first": 5}},
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/graphql-response+json",
        },
    )
    assert response.status_code == 400
    assert "data" not in response.json()
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


def test_budget_of_a_viewer(limited_settings: Settings) -> None:
    costs = _estimator(limited_settings)
    assert costs.max_cost(None) == BUDGETS[None]
    for role in Role:
        viewer = Viewer(account_id="x", role=role, display_name="x", student_ids=frozenset())
        assert costs.max_cost(viewer) == BUDGETS[role]
