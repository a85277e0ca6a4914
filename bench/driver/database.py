"""The bench databases: an embedded PostgreSQL under bench/.data, seeded by the generator.

One server holds a database per scale (`bench_s10`, `bench_s100`, ...). A database whose
`gateway.seed_info` already matches (scale, seed, today) is reused, so reruns are fast.
`Fixture` is what the operations need from a database: the demo persons' ids, their
tokens, the week, the quarter and the school year.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import asyncpg

from auth.store.accounts import ensure_demo_account, load_viewer
from auth.store.sessions import issue_dev_token
from bench.driver import rls
from fixtures.database import apply_schema
from fixtures.demo import demo_account
from fixtures.generate import seed
from gateway.core import embedded
from gateway.core.db import create_pool
from gateway.core.db_roles import read_or_create_secret
from gateway.core.settings import Settings
from gateway.migrations.location import GATEWAY_PASSWORD_FILE, prepare_login

PARENT_ACCOUNT = "parent-two-schools"
QUARTER_ACCOUNT = "student-young"
YEAR_ACCOUNT = "student-older"
# The gateway's HS256 secret for the bench: made once (random, 0600) and kept here, read
# by every process that issues or verifies the bench's tokens (the served gateways get it
# as SCHOOL_GATEWAY_JWT_SECRET: bench/driver/targets.py, bench/chaos_driver/cli.py).
JWT_SECRET_FILE = Path(__file__).resolve().parent.parent / ".data" / "gateway-jwt-secret"
JWT_TTL_S = 86400


@dataclass(frozen=True, slots=True)
class Database:
    """One seeded bench database: the superuser's DSN (`url`: seeding, expected values,
    PostGraphile), the gateway's login role's (`gateway_url`: the gateway, the raw
    limit) and PostGraphile-RLS's authenticator's (`rls_url`, bench/postgraphile/rls.sql)."""

    name: str
    url: str
    scale: int
    gateway_url: str
    rls_url: str = ""


@dataclass(frozen=True, slots=True)
class Fixture:
    """Ids, dates and tokens the canonical operations are run with, for one database.

    `tokens`: the gateway's bearer tokens; `rls_tokens`: PostGraphile-RLS's JWTs of the
    same accounts (bench/driver/rls.py), by account key."""

    database: Database
    tokens: dict[str, str]
    values: dict[str, object]
    rls_tokens: dict[str, str] = field(default_factory=dict)


@functools.cache
def jwt_secret() -> str:
    """The gateway's JWT secret for the bench (JWT_SECRET_FILE, generated on first use)."""
    return read_or_create_secret(JWT_SECRET_FILE)


def jwt_secret_fingerprint() -> str:
    """A short digest of the gateway's secret: saved tokens are reused only under it."""
    return hashlib.sha256(jwt_secret().encode()).hexdigest()[:16]


def start_server(data_dir: Path) -> embedded.EmbeddedServer:
    """The embedded server on bench/.data (tuned for a disposable data set: no fsync)."""
    return embedded.start(data_dir, ephemeral=True)


def database_url(server: embedded.EmbeddedServer, name: str) -> str:
    return server.url_of(name)


def gateway_settings(url: str) -> Settings:
    """Production-like gateway settings for a database (what the served gateway uses too)."""
    return Settings.from_env(
        {
            "DATABASE_URL": url,
            "SCHOOL_GATEWAY_JWT_SECRET": jwt_secret(),
            "SCHOOL_GATEWAY_JWT_TTL": str(JWT_TTL_S),
        }
    )


async def prepare_database(
    server: embedded.EmbeddedServer, *, scale: int, seed_value: int, today: date
) -> Database:
    """The database for `scale`: created, seeded unless it already matches, with stats on."""
    name = f"bench_s{scale}"
    admin = await asyncpg.connect(database_url(server, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = database_url(server, name)
    current = await _seed_info(url)
    if current == (scale, seed_value, today):
        print(f"    {name}: reusing the seeded data (scale {scale}, seed {seed_value}, {today})")
    else:
        await _seed(url, name=name, scale=scale, seed_value=seed_value, today=today)
    conn = await asyncpg.connect(url)
    try:
        # A reused database gets this tree's schema (views, indexes, change tracking).
        try:
            await apply_schema(conn, gateway_role=gateway_settings(url).gateway_role)
        except asyncpg.PostgresError as error:  # the check of the answers follows anyway
            print(f"    {name}: WARNING: the schema could not be applied again ({error});")
            print(f"    {name}: continuing with the schema it has")
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    # The login role is the cluster's: one password (kept in bench/.data) for every database.
    password = read_or_create_secret(server.data_dir / GATEWAY_PASSWORD_FILE)
    role = gateway_settings(url).gateway_role
    gateway_url = await prepare_login(url, role, password)
    rls_url = await rls.prepare_rls(url, server.data_dir)
    return Database(name=name, url=url, scale=scale, gateway_url=gateway_url, rls_url=rls_url)


async def _seed_info(url: str) -> tuple[int, int, date] | None:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('gateway.seed_info') IS NOT NULL"):
            return None
        row = await conn.fetchrow("SELECT scale, seed, today FROM gateway.seed_info")
    finally:
        await conn.close()
    return None if row is None else (row["scale"], row["seed"], row["today"])


async def _seed(url: str, *, name: str, scale: int, seed_value: int, today: date) -> None:
    print(f"    {name}: seeding scale {scale} (seed {seed_value}, today {today})", flush=True)
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"      [{time.monotonic() - started:6.1f} s] {line}", flush=True)

    summary = await seed(url, scale=scale, seed=seed_value, today=today, progress=progress)
    for line in summary.describe().splitlines():
        print(f"      {line}")


async def load_fixture(database: Database, *, today: date) -> Fixture:
    """Tokens of the demo accounts and the ids and dates of the operations."""
    settings = gateway_settings(database.gateway_url)
    pool = await create_pool(database.gateway_url, dataclasses.replace(settings, pool_min_size=1))
    try:
        tokens: dict[str, str] = {}
        scopes: dict[str, list[int]] = {}
        for key in (PARENT_ACCOUNT, QUARTER_ACCOUNT, YEAR_ACCOUNT):
            account_id = await ensure_demo_account(pool, demo_account(key))
            viewer = await load_viewer(pool, account_id)
            assert viewer is not None
            tokens[key] = await issue_dev_token(pool, settings, account_id)
            scopes[key] = sorted(viewer.student_ids)
    finally:
        await pool.close()
    (quarter_student,) = scopes[QUARTER_ACCOUNT]
    (year_student,) = scopes[YEAR_ACCOUNT]
    conn = await asyncpg.connect(database.url)
    try:
        period = await conn.fetchrow(_CURRENT_PERIOD, quarter_student, today)
        year = await conn.fetchrow(_SCHOOL_YEAR, year_student)
    finally:
        await conn.close()
    if period is None or year is None:
        raise RuntimeError(f"{database.name}: no current period or school year for the demo")
    rls_tokens = await _rls_tokens(database, scopes)
    monday = today - timedelta(days=today.weekday())
    values: dict[str, object] = {
        "parent_student_ids": scopes[PARENT_ACCOUNT],
        "week_from": monday.isoformat(),
        "week_to": (monday + timedelta(days=6)).isoformat(),
        "quarter_student_id": str(quarter_student),
        "quarter_student_pk": quarter_student,
        "quarter_period_id": str(period["id"]),
        "quarter_from": period["starts_on"].isoformat(),
        "quarter_to": period["ends_on"].isoformat(),
        "year_student_id": str(year_student),
        "year_student_pk": year_student,
        "year_from": year["starts_on"].isoformat(),
        "year_to": year["ends_on"].isoformat(),
    }
    return Fixture(database=database, tokens=tokens, values=values, rls_tokens=rls_tokens)


async def _rls_tokens(database: Database, scopes: dict[str, list[int]]) -> dict[str, str]:
    """PostGraphile-RLS's JWT per demo account, after proving its policies restrict: as
    the viewer each account sees exactly its gateway scope, not another family's student."""
    conn = await asyncpg.connect(database.url)
    try:
        claims = {
            key: await rls.viewer_claims(conn, demo_account(key), ids)
            for key, ids in scopes.items()
        }
    finally:
        await conn.close()
    for key, ids in scopes.items():
        visible, other = await rls.check_policies(database.url, database.rls_url, claims[key], ids)
        if key == PARENT_ACCOUNT:
            print(
                f"    {database.name}: row-level security: {key} ({claims[key]}) sees students "
                f"{visible}; another family's student {other}: not visible",
                flush=True,
            )
    return {key: rls.sign_jwt(account_claims) for key, account_claims in claims.items()}


_CURRENT_PERIOD = """
SELECT p.id, p.starts_on, p.ends_on
FROM diary_api.students s
JOIN diary_api.periods p
  ON p.school_id = s.school_id AND p.year_id = s.year_id AND p.scheme = s.period_scheme
WHERE s.id = $1 AND $2::date BETWEEN p.starts_on AND p.ends_on
"""

_SCHOOL_YEAR = """
SELECT y.starts_on, y.ends_on
FROM school.students s
JOIN school.classes c ON c.id = s.class_id
JOIN school.academic_years y ON y.id = c.year_id
WHERE s.id = $1
"""
