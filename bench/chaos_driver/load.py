"""Concurrent clients asking each family's diary, every answer compared with the right one.

Each client loops over the families (bounded by a deadline and a request budget) and
POSTs the family's diary query to the gateway on 127.0.0.1. A response is classified by
its HTTP status and the `extensions.code` of its first error; a 200 whose `data` differs
from the answer recorded while the database was up is a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

REQUEST_TIMEOUT_S = 15.0
OPERATION = "ChaosDiary"

DIARY_QUERY = """
query ChaosDiary($from: Date, $to: Date) {
  myChildren {
    id
    fullName
    schoolClass { name }
    diary(from: $from, to: $to) {
      from
      to
      days {
        date
        lessons {
          number
          subject { name }
          teacher { name }
          status
          topic
          homework { text dueOn }
          marks { value weight workType { name } }
          attendance { code minutesLate }
        }
      }
    }
    averages { subject { name } weightedAverage }
  }
}
"""


@dataclass(frozen=True, slots=True)
class Family:
    """A demo account, its token and the diary answer recorded while the database was up."""

    key: str
    token: str
    expected: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One response (or transport failure) as the load saw it."""

    sent_at: float
    done_at: float
    status: int | None  # None: no HTTP response (connection refused, timeout)
    code: str | None  # the first error's extensions.code, or the transport error's name
    retry_after: bool
    wrong: bool  # a 200 whose data differs from the recorded answer
    returned_data: bool = False  # a 200 with students' data (the gateway audits it)

    @property
    def good(self) -> bool:
        return self.status == 200 and self.code is None and not self.wrong

    @property
    def latency(self) -> float:
        return self.done_at - self.sent_at

    @property
    def label(self) -> str:
        status = "no response" if self.status is None else str(self.status)
        return status if self.code is None else f"{status} {self.code}"


@dataclass
class Load:
    """The outcomes of every request, in the order they completed."""

    outcomes: list[Outcome] = field(default_factory=list)


def diary_body(week: tuple[str, str]) -> bytes:
    return orjson.dumps({"query": DIARY_QUERY, "variables": {"from": week[0], "to": week[1]}})


def headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


async def record_answers(
    base_url: str, families: Sequence[Family], week: tuple[str, str]
) -> list[Family]:
    """Each family's diary, asked while the database is up: the right answers."""
    recorded: list[Family] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        for family in families:
            response = await client.post(
                "/graphql", content=diary_body(week), headers=headers(family.token)
            )
            payload = response.json()
            if response.status_code != 200 or payload.get("errors"):
                raise RuntimeError(f"{family.key}: no clean answer to record: {response.text}")
            if not payload["data"]["myChildren"]:
                raise RuntimeError(f"{family.key}: no children: the comparison would be empty")
            recorded.append(Family(family.key, family.token, payload["data"]))
    return recorded


async def run_load(
    base_url: str,
    families: Sequence[Family],
    week: tuple[str, str],
    *,
    clients: int,
    max_requests: int,
    until: Callable[[], bool],
) -> Load:
    """`clients` concurrent loops until `until()` says stop or `max_requests` were sent."""
    load = Load()
    budget = [max_requests]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    body = diary_body(week)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        loops = [
            _client_loop(client, families, body, index, load, budget, until)
            for index in range(clients)
        ]
        await asyncio.gather(*loops)
    return load


async def _client_loop(
    client: httpx.AsyncClient,
    families: Sequence[Family],
    body: bytes,
    index: int,
    load: Load,
    budget: list[int],
    until: Callable[[], bool],
) -> None:
    turn = index
    while budget[0] > 0 and not until():
        budget[0] -= 1
        family = families[turn % len(families)]
        turn += 1
        outcome = await _ask(client, family, body)
        load.outcomes.append(outcome)
        if outcome.status is None:
            await asyncio.sleep(0.01)  # refused at once: do not spin


async def _ask(client: httpx.AsyncClient, family: Family, body: bytes) -> Outcome:
    sent_at = time.monotonic()
    try:
        response = await client.post("/graphql", content=body, headers=headers(family.token))
    except httpx.TransportError as error:
        return Outcome(sent_at, time.monotonic(), None, type(error).__name__, False, False)
    done_at = time.monotonic()
    payload: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        payload = orjson.loads(response.content)
    code = _first_code(payload) if isinstance(payload, dict) else "NOT_JSON"
    wrong = response.status_code == 200 and (
        not isinstance(payload, dict) or payload.get("data") != family.expected
    )
    retry_after = "retry-after" in response.headers
    returned_data = response.status_code == 200 and _has_students(payload)
    return Outcome(sent_at, done_at, response.status_code, code, retry_after, wrong, returned_data)


def _has_students(payload: Any) -> bool:
    data = payload.get("data") if isinstance(payload, dict) else None
    return isinstance(data, dict) and bool(data.get("myChildren"))


def _first_code(payload: Mapping[str, Any]) -> str | None:
    errors = payload.get("errors")
    if not errors:
        return None
    first = errors[0] if isinstance(errors, list) else None
    extensions = first.get("extensions") if isinstance(first, dict) else None
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code if isinstance(code, str) else "NO_CODE"
