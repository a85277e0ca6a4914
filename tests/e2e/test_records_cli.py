"""`school-gateway sign-in-events`, run as a real process against the test database."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from auth.store.audit import Recorder, SignInEvent
from fixtures.demo import demo_account
from gateway.core import identifiers as snils
from gateway.core.identifiers import masked_phone
from tests.support.cli_process import run_school_gateway
from tests.support.journal import family_student_ids
from tests.support.recorder_fixtures import (
    VICTIM_FAMILY,
    account_id,
)

# --- the support command ---------------------------------------------------------------

FUTURE = datetime(2031, 5, 1, 10, 0, tzinfo=UTC)  # after anything other tests record


def run_command(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_school_gateway(database_url, data_dir, "sign-in-events", *args)


@pytest.fixture
async def planted_events(pool: asyncpg.Pool, owner_conn: asyncpg.Connection) -> list[int]:
    """Three sign-in events in the future, written by a recorder; the two schools' ids."""
    schools = [
        row["school_id"]
        for row in await owner_conn.fetch(
            "SELECT DISTINCT school_id FROM school.students WHERE id = ANY($1::int[]) ORDER BY 1",
            await family_student_ids(owner_conn, VICTIM_FAMILY),
        )
    ]
    if await owner_conn.fetchval(
        "SELECT count(*) FROM gateway.sign_in_events WHERE at >= $1", FUTURE
    ):
        return schools
    unregistered, family = demo_account("parent-unregistered"), demo_account(VICTIM_FAMILY)
    recorder = Recorder(lambda: pool)
    for event in (
        SignInEvent(
            method="ESIA",
            outcome="NOT_IN_REGISTRY",
            snils=unregistered.snils,
            phone=unregistered.phone,
            at=FUTURE,
        ),
        SignInEvent(
            method="ESIA",
            outcome="SIGNED_IN",
            snils=family.snils,
            phone=family.phone,
            school_ids=tuple(schools),
            account_id=await account_id(pool, VICTIM_FAMILY),
            at=FUTURE + timedelta(days=1),
        ),
        SignInEvent(
            method="PASSWORD",
            outcome="INVALID_CREDENTIALS",
            login="smirnov.petr",
            school_ids=(schools[0],),
            client_address="192.0.2.10",
            at=FUTURE + timedelta(days=2),
        ),
    ):
        recorder.sign_in(event)
    await recorder.close()
    return schools


def outcomes(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [event["outcome"] for event in json.loads(result.stdout)]


async def test_sign_in_events_command_lists_masked_events(
    database_url: str,
    tmp_path: Path,
    owner_conn: asyncpg.Connection,
    planted_events: list[int],
) -> None:
    since = FUTURE.date().isoformat()
    result = run_command(database_url, tmp_path, "--since", since, "--json")
    assert outcomes(result) == ["INVALID_CREDENTIALS", "SIGNED_IN", "NOT_IN_REGISTRY"]
    events = json.loads(result.stdout)
    family, unregistered = demo_account(VICTIM_FAMILY), demo_account("parent-unregistered")
    assert family.snils and unregistered.snils and unregistered.phone
    short_names = {
        row["id"]: row["short_name"]
        for row in await owner_conn.fetch("SELECT id, short_name FROM diary_api.schools")
    }
    signed_in = events[1]
    assert signed_in["masked_snils"] == snils.masked(family.snils)
    assert signed_in["school_ids"] == planted_events
    assert signed_in["schools"] == [short_names[school] for school in planted_events]
    assert signed_in["message"] == "Вход выполнен."
    assert events[2]["masked_phone"] == masked_phone(unregistered.phone)
    assert events[2]["school_ids"] == [] and "СНИЛС" in events[2]["message"]
    assert events[0]["login"] == "smirnov.petr" and events[0]["method"] == "PASSWORD"
    for secret in (family.snils, unregistered.snils, unregistered.phone, family.phone or ""):
        assert secret not in result.stdout

    text = run_command(database_url, tmp_path, "--since", since)
    assert text.returncode == 0, text.stderr
    assert "found in: no school registry" in text.stdout
    assert snils.masked(unregistered.snils) in text.stdout
    assert (
        unregistered.snils not in text.stdout
        and snils.formatted(unregistered.snils) not in text.stdout
    )


async def test_sign_in_events_command_filters(
    database_url: str, tmp_path: Path, planted_events: list[int]
) -> None:
    since = ["--since", FUTURE.isoformat(), "--json"]
    second_school = str(planted_events[1])
    cases: list[tuple[list[str], list[str]]] = [
        (["--school", second_school], ["SIGNED_IN"]),
        (["--school", str(planted_events[0])], ["INVALID_CREDENTIALS", "SIGNED_IN"]),
        (["--outcome", "not_in_registry"], ["NOT_IN_REGISTRY"]),
        (["--snils", demo_account("parent-unregistered").snils or ""], ["NOT_IN_REGISTRY"]),
        (["--phone", demo_account(VICTIM_FAMILY).phone or ""], ["SIGNED_IN"]),
        (["--limit", "1"], ["INVALID_CREDENTIALS"]),
    ]
    for args, expected in cases:
        assert outcomes(run_command(database_url, tmp_path, *since, *args)) == expected, args


@pytest.mark.parametrize(
    "args",
    [
        ["--outcome", "NO_SUCH_CODE"],
        ["--since", "yesterday"],
        ["--limit", "0"],
        ["--snils", "1"],
        ["--school", "3000000000"],  # beyond PostgreSQL's integer: refused, not a traceback
    ],
)
def test_sign_in_events_command_refuses_bad_arguments(
    database_url: str, tmp_path: Path, args: list[str]
) -> None:
    result = run_command(database_url, tmp_path, *args)
    assert result.returncode == 2
    assert "sign-in-events" in result.stderr and "Traceback" not in result.stderr
