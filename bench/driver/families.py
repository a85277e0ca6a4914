"""The `families` workload: many real parent accounts, each request a random family's week.

From the bench database, `FAMILY_COUNT` parents (persons, by SNILS) with linked students
are picked with the run's seed. Each gets its gateway account and a session-bound access
token through the project's own code (`auth.store.accounts.upsert_parent_account`,
`auth.store.sessions.issue_dev_token`: a new API session, access token valid for the
bench's SCHOOL_GATEWAY_JWT_TTL, a day, so every token outlives the run), and its scope is
read as the gateway reads it (`load_viewer`): the same student ids go to PostGraphile.

Three files per database under bench/.data/families/<database>/, read by
bench/wrk/families.lua:
- `gateway.tsv`, `postgraphile.tsv`: one line per family, `<Authorization>\\t<JSON body>`
  (PostGraphile's authorization is empty; bodies are single-line JSON);
- `sequence.txt`: the order of requests, one family number (1-based) per line, drawn
  with replacement from the seed: both targets get the same sequence of families;
- `students.txt`: every family's student ids (the writer works in their schools).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from auth.store.accounts import load_viewer, upsert_parent_account
from auth.store.sessions import issue_dev_token
from bench.driver.database import Database, gateway_settings
from bench.driver.operations import Kind, Request, load_operation
from gateway.core.db import create_pool

FAMILY_COUNT = 2000
SEQUENCE_LENGTH = 200_000
FILE_NAMES = {Kind.GATEWAY: "gateway.tsv", Kind.POSTGRAPHILE: "postgraphile.tsv"}
SEQUENCE_FILE = "sequence.txt"
STUDENTS_FILE = "students.txt"

# Parent persons (a well-formed SNILS) with at least one linked student, in a fixed order.
_PARENTS = r"""
SELECT p.snils, min(p.phone) AS phone,
       min(concat_ws(' ', p.last_name, p.first_name, p.patronymic)) AS full_name
FROM school.parents p
WHERE p.snils ~ '^[0-9]{11}$'
  AND EXISTS (SELECT 1 FROM school.parent_students ps WHERE ps.parent_id = p.id)
GROUP BY p.snils
ORDER BY p.snils
"""


@dataclass(frozen=True, slots=True)
class Family:
    """One parent's account, access token and the students the gateway lets them see."""

    account_id: str
    token: str
    student_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Families:
    """The families of one run and where their request files are."""

    families: tuple[Family, ...]
    directory: Path
    week_from: date
    week_to: date

    def file(self, kind: Kind) -> Path:
        return self.directory / FILE_NAMES[kind]

    @property
    def sequence(self) -> Path:
        return self.directory / SEQUENCE_FILE

    @property
    def students(self) -> Path:
        """The families' student ids, one a line (the writer's input)."""
        return self.directory / STUDENTS_FILE

    @property
    def school_student_ids(self) -> tuple[int, ...]:
        """Every student of every family (the writer works in their schools)."""
        return tuple(sorted({sid for family in self.families for sid in family.student_ids}))


async def pick_parents(url: str, *, count: int, seed: int) -> list[asyncpg.Record]:
    """`count` parent persons with linked students, sampled with the seed."""
    conn = await asyncpg.connect(url)
    try:
        rows = list(await conn.fetch(_PARENTS))
    finally:
        await conn.close()
    if len(rows) < count:
        raise RuntimeError(f"only {len(rows)} parents with children; use a larger --scale")
    return random.Random(seed).sample(rows, count)


async def _make_family(pool: asyncpg.Pool, database: Database, row: asyncpg.Record) -> Family:
    settings = gateway_settings(database.gateway_url)
    account_id = await upsert_parent_account(
        pool, snils=row["snils"], phone=row["phone"], display_name=row["full_name"]
    )
    viewer = await load_viewer(pool, account_id)
    if viewer is None or not viewer.student_ids:
        raise RuntimeError(f"parent account {account_id} has no children")
    token = await issue_dev_token(pool, settings, account_id)
    return Family(account_id, token, tuple(sorted(viewer.student_ids)))


async def make_families(
    database: Database, *, today: date, seed: int, directory: Path, count: int = FAMILY_COUNT
) -> Families:
    """Accounts, tokens and request files of `count` families (the week of `today`)."""
    rows = await pick_parents(database.url, count=count, seed=seed)
    settings = gateway_settings(database.gateway_url)
    pool = await create_pool(database.gateway_url, dataclasses.replace(settings, pool_min_size=1))
    try:
        # A few at a time: the pool has at most 10 connections.
        families: list[Family] = []
        for start in range(0, len(rows), 8):
            chunk = rows[start : start + 8]
            families += await asyncio.gather(*(_make_family(pool, database, r) for r in chunk))
    finally:
        await pool.close()
    monday = today - timedelta(days=today.weekday())
    result = Families(tuple(families), directory, monday, monday + timedelta(days=6))
    write_files(result, seed=seed)
    return result


def requests_of(families: Families, kind: Kind) -> list[Request]:
    """Each family's request for a target kind, in family order."""
    operation = load_operation("parent-week")
    week = {"from": families.week_from.isoformat(), "to": families.week_to.isoformat()}
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    requests = []
    for family in families.families:
        variables: dict[str, Any] = dict(week)
        if kind is Kind.POSTGRAPHILE:
            variables = {"studentIds": list(family.student_ids), **week}
        payload = {"query": operation.documents[kind], "variables": variables}
        extra = {"Authorization": f"Bearer {family.token}"} if kind is Kind.GATEWAY else {}
        requests.append(Request("/graphql", _json(payload), headers | extra))
    return requests


def write_files(families: Families, *, seed: int) -> None:
    """The request files of both target kinds and the seeded sequence of families."""
    families.directory.mkdir(parents=True, exist_ok=True)
    for kind in FILE_NAMES:
        lines = [
            f"{request.headers.get('Authorization', '')}\t{request.body.decode()}"
            for request in requests_of(families, kind)
        ]
        families.file(kind).write_text("\n".join(lines) + "\n", encoding="utf-8")
    order = sequence(len(families.families), seed=seed)
    families.sequence.write_text("\n".join(map(str, order)) + "\n", encoding="utf-8")
    students = "\n".join(map(str, families.school_student_ids)) + "\n"
    families.students.write_text(students, encoding="utf-8")


def sequence(count: int, *, seed: int, length: int = SEQUENCE_LENGTH) -> Sequence[int]:
    """Family numbers (1-based) drawn with replacement: a random family per request."""
    rng = random.Random(f"families-{seed}")
    return [rng.randrange(count) + 1 for _ in range(length)]


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
