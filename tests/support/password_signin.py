"""Password sign-in over HTTP for the tests: a student planted with a known password,
an application with other throttle limits and clients by address, the JSON sign-in."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import httpx
from argon2 import PasswordHasher
from starlette.applications import Starlette

from auth.signin.password import add_months
from fixtures.demo import DEMO_ACCOUNTS
from gateway.app import create_app
from gateway.core.settings import Settings
from tests.support.environment import TODAY

PLANTED_PASSWORD = "Proverka-2026"
LOGIN_URL = "/auth/login"
ORIGIN = "http://127.0.0.1:8000"

ClientFactory = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


@dataclasses.dataclass(frozen=True, slots=True)
class PlantedStudent:
    student_id: int
    school_id: int
    login: str


@asynccontextmanager
async def http_client(app: Starlette, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` whose requests come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield client


@asynccontextmanager
async def throttled_app(
    settings: Settings, pool: asyncpg.Pool, **limits: int
) -> AsyncIterator[tuple[Starlette, ClientFactory]]:
    """An application with other throttle limits, and a factory of clients by address."""
    auth = dataclasses.replace(settings.auth, **limits)  # type: ignore[arg-type]
    app = create_app(dataclasses.replace(settings, auth=auth), pool=pool)

    def client(address: str) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return http_client(app, address)

    try:
        yield app, client
    finally:
        await app.state.auth.recorder.close()


async def sign_in_json(
    client: httpx.AsyncClient, login: str, password: str
) -> tuple[httpx.Response, dict[str, Any]]:
    response = await client.post(LOGIN_URL, json={"login": login, "password": password})
    payload: dict[str, Any] = response.json()
    return response, payload


def code_of(payload: dict[str, Any]) -> str:
    return str(payload["errors"][0]["extensions"]["code"])


async def forget_throttle(owner_conn: asyncpg.Connection, *keys: str) -> None:
    await owner_conn.execute(
        "DELETE FROM gateway.sign_in_throttle WHERE key = ANY($1::text[])", list(keys)
    )


@asynccontextmanager
async def planted_student(owner_conn: asyncpg.Connection) -> AsyncIterator[PlantedStudent]:
    """A generated student with a login, given a known password and an age of 12; restored
    (and its login's throttle forgotten) on exit."""
    demo_logins = [c.login for a in DEMO_ACCOUNTS for c in a.children if c.login]
    row = await owner_conn.fetchrow(
        """SELECT id, school_id, login, birth_date, password_hash FROM school.students
           WHERE login IS NOT NULL AND login <> ALL($1::text[]) ORDER BY id LIMIT 1""",
        demo_logins,
    )
    assert row is not None
    hashed = await asyncio.to_thread(PasswordHasher().hash, PLANTED_PASSWORD)
    await owner_conn.execute(
        "UPDATE school.students SET password_hash = $2, birth_date = $3 WHERE id = $1",
        row["id"],
        hashed,
        add_months(TODAY, -12 * 12),
    )
    student = PlantedStudent(row["id"], row["school_id"], row["login"])
    try:
        yield student
    finally:
        await owner_conn.execute(
            "UPDATE school.students SET password_hash = $2, birth_date = $3 WHERE id = $1",
            row["id"],
            row["password_hash"],
            row["birth_date"],
        )
        await forget_throttle(owner_conn, f"login:{student.login}")
