"""Helpers shared by the records tests (tests/db/test_records*.py): unique operation names,
reading back audit rows and sign-in events, and checking log records for personal data.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from datetime import date

import asyncpg

from auth.store.accounts import ensure_demo_account
from auth.store.audit import Recorder
from fixtures.demo import DEMO_ACCOUNTS, demo_account
from gateway.core import identifiers as snils
from gateway.core.db import create_pool
from gateway.core.settings import Settings

VICTIM_FAMILY = "parent-two-schools"
ATTACKER = "parent-one-school"


def op(label: str) -> str:
    """A unique GraphQL operation name, so a test finds exactly its own audit rows."""
    return f"Rec{label}_{uuid.uuid4().hex[:12]}"


async def audit_rows(
    owner_conn: asyncpg.Connection, recorder: Recorder, operation: str
) -> list[asyncpg.Record]:
    async with asyncio.timeout(10):
        await recorder.flush()
    rows: list[asyncpg.Record] = await owner_conn.fetch(
        """SELECT at, account_id::text AS account_id, role, student_ids, operation_name
           FROM gateway.access_audit WHERE operation_name = $1 ORDER BY id""",
        operation,
    )
    return rows


async def account_id(pool: asyncpg.Pool, key: str) -> str:
    return await ensure_demo_account(pool, demo_account(key))


async def sign_in_rows(owner_conn: asyncpg.Connection, login: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await owner_conn.fetch(
        """SELECT id, at, method, outcome, masked_snils, masked_phone, login, school_ids,
                  account_id::text AS account_id, client_address
           FROM gateway.sign_in_events WHERE login = $1 ORDER BY id""",
        login,
    )
    return rows


def constant_pool(value: asyncpg.Pool) -> Callable[[], asyncpg.Pool]:
    return lambda: value


def personal_values(birth_dates: list[date]) -> list[str]:
    """Every demo person's SNILS (raw and formatted), phone (several spellings), birth date."""
    values: list[str] = []
    for account in DEMO_ACCOUNTS:
        people = [(account.snils, account.phone)] + [
            (child.snils, child.phone) for child in account.children
        ]
        for raw_snils, phone in people:
            if raw_snils:
                values += [raw_snils, snils.formatted(raw_snils)]
            if phone:
                digits = re.sub(r"\D", "", phone)
                values += [phone, digits, "8" + digits[1:], digits[1:]]
    for birth_date in birth_dates:
        values += [birth_date.isoformat(), birth_date.strftime("%d.%m.%Y")]
    return values


def assert_no_personal_data(records: list[logging.LogRecord], values: list[str]) -> None:
    formatter = logging.Formatter("%(name)s %(message)s")
    for record in records:
        text = formatter.format(record)
        for value in values:
            if value:
                assert value not in text, f"personal data in the log of {record.name}"


async def open_closed_pool(database_url: str, settings: Settings) -> asyncpg.Pool:
    """A real pool to the test database, already closed: the database is 'down'."""
    down = await create_pool(database_url, settings)
    await down.close()
    return down
