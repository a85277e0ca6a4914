"""No coroutine is left unawaited, whatever the document (issue 9, item 8).

A fuzz run logged ~11,000 "coroutine … was never awaited" warnings. The cause (see
`gateway.execution.settling`): graphql-core 3.3 cancels the sibling tasks of a failing non-null
field, and a task cancelled before its first step drops the coroutines it already owns
(resolver calls, `complete_awaitable_value`, `get_results` of the level below). It takes
a sibling that gets far enough, in the same turn of the event loop as the failure, to
start the next level: e.g. `myChildren` answered from the loaders' caches (which the
compiled executor filled before handing the request to graphql-core) while a non-null
`schoolDashboard` is refused.

Each test replays documents through the real application (both executors) and catches,
after a garbage collection, every "never awaited" warning, every unraisable exception and
every asyncio complaint ("Task exception was never retrieved", "Task was destroyed but it
is pending"): there must be none.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import inspect
import logging
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import build_schema, execute, parse
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes, queries
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.core.settings import Settings
from gateway.execution.schema import export_sdl
from gateway.execution.settling import SettlingExecutionContext

BASE_URL = "http://127.0.0.1:8000"
PARENT_TWO = "parent-two-schools"


@dataclass(slots=True)
class Leaks:
    """What a block left behind: warnings, unraisable exceptions, asyncio errors."""

    never_awaited: list[str] = field(default_factory=list)
    unraisable: list[str] = field(default_factory=list)
    asyncio_errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.never_awaited or self.unraisable or self.asyncio_errors)


class _Records(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage().splitlines()[0])


@contextmanager
def catching_leaks() -> Iterator[Leaks]:
    """Record what the block leaves unawaited or unretrieved (collected at its end);
    garbage left by earlier tests is collected first, so it is not the block's."""
    gc.collect()
    leaks = Leaks()
    handler = _Records(leaks.asyncio_errors)
    asyncio_log = logging.getLogger("asyncio")
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda raised: leaks.unraisable.append(repr(raised.exc_value))
    asyncio_log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield leaks
            gc.collect()
        leaks.never_awaited.extend(
            str(w.message).splitlines()[0] for w in caught if "never awaited" in str(w.message)
        )
    finally:
        asyncio_log.removeHandler(handler)
        sys.unraisablehook = previous_hook


async def _fails() -> None:
    raise ValueError("unretrieved")


async def test_the_check_sees_what_it_is_for() -> None:
    """A dropped coroutine and a task whose exception nobody read are both caught."""
    with catching_leaks() as leaks:
        _fails()  # type: ignore[unused-coroutine]  # dropped on purpose
        task = asyncio.ensure_future(_fails())
        await asyncio.wait({task})
        del task
    assert leaks.never_awaited == ["coroutine '_fails' was never awaited"]
    assert leaks.asyncio_errors == ["Task exception was never retrieved"]


# --- the cause, without the database ------------------------------------------------------

_TOY_SCHEMA = build_schema("type Query { kids: [Kid!]! boom: Int! } type Kid { name: String }")


class _Kid:
    async def name(self, _info: Any) -> str:
        return "kid"


class _Root:
    async def kids(self, _info: Any) -> list[_Kid]:
        # Two turns of the loop: the kids' fields are started in the turn the failure of
        # `boom` reaches the root, as with loaders answering from their caches.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return [_Kid(), _Kid()]

    async def boom(self, _info: Any) -> int:
        raise ValueError("boom")


async def test_a_failing_sibling_leaves_no_coroutine_unawaited() -> None:
    """The smallest reproduction: non-null `boom` fails while `kids` starts its items."""
    with catching_leaks() as leaks:
        outcome = execute(
            _TOY_SCHEMA,
            parse("{ kids { name } boom }"),
            _Root(),
            executor_class=SettlingExecutionContext,
        )
        assert inspect.isawaitable(outcome)
        result = await outcome
        assert result.errors is not None
        assert result.data is None
        assert [error.message for error in result.errors] == ["boom"]
        del result  # its error's traceback would keep the frames (and coroutines) alive
        await _let_background_work_finish()
    assert not leaks, leaks


async def test_a_failure_is_raised_at_once_and_its_siblings_run_to_their_end() -> None:
    executor = SettlingExecutionContext.build(_TOY_SCHEMA, parse("{ boom }"))
    assert isinstance(executor, SettlingExecutionContext)
    finished: list[str] = []

    async def sibling() -> int:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        finished.append("sibling")
        return 1

    with pytest.raises(ValueError, match="boom"):
        await executor.gather_async_work([_Root().boom(None), sibling()])
    assert finished == []  # raised before the sibling ended…
    while executor.background_futures:
        await asyncio.wait(list(executor.background_futures))
    assert finished == ["sibling"]  # …which was not cancelled (graphql-core cancels it)
    assert await executor.gather_async_work([]) == []


# --- the application ------------------------------------------------------------------------

# Minimal documents reduced from the fuzz run's: a non-null field refused (FORBIDDEN,
# BAD_USER_INPUT) next to `myChildren`, whose students' fields start in the same turn.
# Before the fix, each one left 2 to 14 coroutines unawaited under the compiled executor.
MINIMAL_DOCUMENTS: list[tuple[str, str]] = [
    ('{ myChildren { marks { id } } schoolDashboard(schoolId: "1") { from } }', PARENT_TWO),
    (
        "{ myChildren { averages { subject { name } } finalMarks { value } }"
        ' schoolDashboard(schoolId: "1") { today } }',
        "student-young",
    ),
    (
        "{ myChildren { diary { days { date } } lastUpdatedAt }"
        ' student(id: "abc") { id } schoolDashboard(schoolId: "") { from } }',
        "parent-one-school",
    ),
    (
        "{ myChildren { periods { title } } a: myChildren { marks(first: 3) { value } }"
        ' schoolDashboard(schoolId: "1") { from } }',
        PARENT_TWO,
    ),
    # One of the fuzz run's documents as it was generated.
    (
        """{
  myChildren {
    firstName
    diary(from: null, to: "0122-10-04") { to homework { lessonId } lastUpdatedAt }
    finalMarks(kind: null) { updatedAt }
    marks(from: "6938-12-16", to: "0001-01-01", subjectId: "", first: 0) { createdAt }
  }
  student(id: "") {
    lastName
    diary(from: null, to: "0122-10-04") { lastUpdatedAt }
    finalMarks(kind: PERIOD) { updatedAt }
  }
  schoolDashboard(schoolId: "", from: "0003-01-01", to: "2000-01-01") {
    school { municipality }
    from
    registry { parentsWithInvalidSnils }
    signIns { failures }
  }
  regionalAnalytics { attendance(groupBy: [], filter: { codes: [] }) { minGroupSize } }
}""",
        PARENT_TWO,
    ),
]
EXECUTORS = ("compiled", "reference")
# The generated batch: documents from the schema (hypothesis-graphql, fixed seed), with
# dates and ids that are often invalid, each sent as accounts with children (their
# students' fields are where coroutines were dropped) and as a school administrator.
GENERATED_DOCUMENTS = 150
GENERATED_SEED = 20261204
GENERATED_ACCOUNTS = (PARENT_TWO, "student-young", "school-admin")


@dataclass(slots=True)
class Client:
    http: httpx.AsyncClient
    app: Starlette
    executor: str

    async def ask(self, query: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return await self.http.post("/graphql", json={"query": query}, headers=headers)

    def outcomes(self) -> dict[str, int]:
        """How the compiled executor answered so far (empty for the reference)."""
        compiled = self.app.state.graphql_endpoint._compiled
        return {} if compiled is None else dict(compiled.outcomes)


@pytest.fixture(scope="module", params=EXECUTORS)
async def app_client(
    request: pytest.FixtureRequest, settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[Client]:
    """The application with SCHOOL_GATEWAY_EXECUTOR=compiled, then =reference."""
    executor: str = request.param
    app = create_app(dataclasses.replace(settings, executor=executor), pool=pool)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL
        ) as http:
            yield Client(http, app, executor)
    finally:
        await app.state.auth.recorder.close()
        await app.state.services.close()


async def test_minimal_documents_leave_no_coroutine_unawaited(
    app_client: Client, tokens: dict[str, str]
) -> None:
    before = app_client.outcomes()
    with catching_leaks() as leaks:
        for query, account in MINIMAL_DOCUMENTS:
            response = await app_client.ask(query, tokens[account])
            payload = response.json()
            # The refused non-null root field nulls the whole answer.
            assert response.status_code == 200, payload
            assert payload["data"] is None, payload
            assert "FORBIDDEN" in {error["extensions"]["code"] for error in payload["errors"]}
            await _let_background_work_finish()
    assert not leaks, leaks
    if app_client.executor == "compiled":  # each was handed over to graphql-core
        after = app_client.outcomes()
        assert after.get("abandoned", 0) - before.get("abandoned", 0) == len(MINIMAL_DOCUMENTS)


async def test_generated_documents_leave_no_coroutine_unawaited(
    app_client: Client, tokens: dict[str, str]
) -> None:
    documents = generated_documents()
    statuses: dict[int, int] = {}
    nulled = 0
    started = time.process_time()
    with catching_leaks() as leaks:
        for number, query in enumerate(documents):
            account = GENERATED_ACCOUNTS[number % len(GENERATED_ACCOUNTS)]
            response = await app_client.ask(query, tokens[account])
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            nulled += "errors" in response.json() and response.json().get("data") is None
        await _let_background_work_finish()
    cpu = time.process_time() - started
    print(
        f"{app_client.executor}: {len(documents)} generated documents, {cpu:.1f} s CPU,"
        f" statuses {statuses}, {nulled} answers nulled by an error,"
        f" executor outcomes {app_client.outcomes()}, never awaited: {len(leaks.never_awaited)}"
    )
    assert not leaks, leaks
    assert set(statuses) == {200}, statuses
    assert nulled >= len(documents) // 10  # non-null errors bubbled to the root often


def generated_documents() -> list[str]:
    """The seeded batch of documents generated from the schema."""
    documents: list[str] = []
    strategy = queries(
        export_sdl(),
        custom_scalars={
            "Date": _dates(),
            "DateTime": st.datetimes().map(lambda value: nodes.String(value.isoformat())),
            "Time": st.times().map(lambda value: nodes.String(value.isoformat())),
        },
    )

    @seed(GENERATED_SEED)
    @hypothesis_settings(
        max_examples=GENERATED_DOCUMENTS,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(document: str) -> None:
        documents.append(document)

    collect()
    return documents


def _dates() -> st.SearchStrategy[Any]:
    """Dates in and out of the allowed range, and strings that are no dates at all."""
    valid = st.sampled_from(["2026-11-23", "2026-11-27", "2026-11-01", "2026-09-01"])
    wrong = st.sampled_from(["0122-10-04", "2999-01-01", "2026-13-45", "x", ""])
    return st.one_of(valid, wrong, st.dates().map(str)).map(nodes.String)


async def _let_background_work_finish() -> None:
    """A few turns of the loop: whatever a response left running gets to finish."""
    for _ in range(5):
        await asyncio.sleep(0)
