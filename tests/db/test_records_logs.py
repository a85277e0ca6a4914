"""No personal data in logs: requests and sign-in paths logged at DEBUG, the redacting
formatter, and the request line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from auth.store.audit import Recorder, SignInEvent
from fixtures.demo import DEMO_ACCOUNTS, demo_account
from gateway.core import identifiers as snils
from gateway.core.logging import (
    RedactingFormatter,
    configure_logging,
    log_request,
    redact,
    safe_path,
    safe_text,
)
from gateway.core.settings import Settings
from tests.support.environment import GraphQL
from tests.support.journal import family_student_ids
from tests.support.recorder_fixtures import (
    ATTACKER,
    VICTIM_FAMILY,
    assert_no_personal_data,
    constant_pool,
    open_closed_pool,
    personal_values,
)


@pytest.fixture
async def closed_pool(database_url: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A real pool to the test database, already closed: the database is 'down'."""
    yield await open_closed_pool(database_url, settings)


# --- no personal data in logs ---------------------------------------------------------


async def test_requests_and_sign_ins_log_no_personal_data(
    gql: GraphQL,
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    closed_pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    births = [
        row["birth_date"]
        for row in await owner_conn.fetch(
            """SELECT birth_date FROM school.students WHERE id = ANY($1::int[])
               UNION SELECT birth_date FROM school.parents WHERE snils = ANY($2::text[])
                     AND birth_date IS NOT NULL""",
            [
                sid
                for key in ("parent-one-school", "parent-two-schools")
                for sid in await family_student_ids(owner_conn, key)
            ],
            [account.snils for account in DEMO_ACCOUNTS if account.snils],
        )
    ]
    values = personal_values(births)
    person = demo_account(VICTIM_FAMILY)
    assert person.snils and person.phone
    (victim, *_) = await family_student_ids(owner_conn, VICTIM_FAMILY)
    # GraphQL: own data, another family's child, anonymous, bad input, a GET with variables.
    await gql(
        "query RecLogs { myChildren { id fullName diary { marks { value } } } }",
        account=VICTIM_FAMILY,
    )
    await gql(f'{{ student(id: "{victim}") {{ id }} }}', account=ATTACKER)
    await gql("{ myChildren { id } }")
    await gql("query($id: ID!) { student(id: $id) { id } }", {"id": person.snils})
    await client.get(
        f"/graphql/{snils.formatted(person.snils)}",
        params={
            "query": "query($p: String) { viewer { id } }",
            "variables": f'{{"p": "{person.phone}"}}',
        },
    )
    await client.get(
        "/graphql",
        params={"query": "{ viewer { id } }", "variables": f'{{"snils": "{person.snils}"}}'},
        headers={"Authorization": f"Bearer {tokens[VICTIM_FAMILY]}"},
    )
    # Sign-in paths: whatever the routes answer, they must not log identifiers.
    for path, body in (
        ("/auth/login", {"login": "smirnov.petr", "password": "wrong-" + person.snils}),
        ("/auth/login", {"login": person.phone, "password": person.snils}),
    ):
        await client.post(path, json=body, headers={"Accept": "application/json"})
    # The recorder with identifiers, the database up and down.
    for getter_pool in (pool, closed_pool):
        recorder = Recorder(constant_pool(getter_pool), max_queued=1, close_timeout_s=0.2)
        for outcome in ("NOT_IN_REGISTRY", "SIGNED_IN"):
            recorder.sign_in(
                SignInEvent(method="ESIA", outcome=outcome, snils=person.snils, phone=person.phone)
            )
        await recorder.close()
    log_request(
        "GET", safe_path(f"/x/{person.snils}/{person.phone}"), 404, 1.0, "Op" + person.snils
    )
    assert len(caplog.records) > 5
    client_side = {"httpx", "httpcore"}  # the test's own HTTP client logging its URLs
    assert_no_personal_data(
        [r for r in caplog.records if r.name.split(".")[0] not in client_side], values
    )


# --- the log formatter and the request line -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("POST /graphql 200 12.3ms op=MyChildren", "POST /graphql 200 12.3ms op=MyChildren"),
        ("Uvicorn running on http://127.0.0.1:8000", "Uvicorn running on http://127.0.0.1:8000"),
        (
            "account 3f2a1b0c-1234-4abc-9def-0123456789ab",
            "account 3f2a1b0c-1234-4abc-9def-0123456789ab",
        ),
        ("snils 246-813-579 94 / 24681357994", "snils *** / ***"),
        ("snils 246 813 579 94.", "snils ***."),  # written with spaces, as people do
        ("phone +79125550102, 8 (912) 555-01-02, +7 912 555 01 02", "phone ***, ***, ***"),
        ("born 2012-03-04 or 04.03.2012", "born *** or ***"),
        ("name=Op24681357994", "name=Op***"),
        # Underscores: how a SNILS, phone or date fits in a GraphQL name (issue 9, item 11).
        ("query snils_112_233_445_95 { viewer }", "query snils_*** { viewer }"),
        ("op=Find_246_813_579_94_now", "op=Find_***_now"),
        ("phone_8_912_555_01_02 or 7_912_555_01_02", "phone_*** or ***"),
        ("born_2012_03_04, 04_03_2012", "born_***, ***"),
        ("Rec_ab12_3, v1_2_3, page_10_20", "Rec_ab12_3, v1_2_3, page_10_20"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_configured_formatter_redacts_messages_and_tracebacks_not_the_time() -> None:
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError("bad SNILS 24681357994")
    except ValueError:
        record = logging.LogRecord(
            "gateway.x", logging.ERROR, __file__, 1, "phone %s", ("+79125550102",), sys.exc_info()
        )
    text = formatter.format(record)
    assert "24681357994" not in text and "+79125550102" not in text
    assert "phone ***" in text and "ValueError: bad SNILS ***" in text
    assert re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ERROR gateway.x", text)


def test_configure_logging_installs_the_redacting_formatter() -> None:
    root = logging.getLogger()
    touched = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, list(lg.handlers), lg.propagate, lg.disabled) for lg in touched]
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("INFO")
        ours = [h for h in root.handlers if getattr(h, "_school_gateway", False)]
        assert ours and all(isinstance(h.formatter, RedactingFormatter) for h in ours)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for logger, logger_handlers, propagate, disabled in saved:
            logger.handlers[:] = logger_handlers
            logger.propagate, logger.disabled = propagate, disabled


def test_the_request_line_masks_digits_in_path_and_operation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    log_request("GET", "/graphql/246-813-579 94/+79125550102", 404, 0.4, "Find24681357994")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert line == "GET /graphql/***/+*** 404 0.4ms op=Find***"
    assert safe_path("/a" * 300).startswith("/a") and len(safe_path("/a" * 300)) == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("snils_112_233_445_95", "snils_***"),
        ("Op_246_813_579_94", "Op_***"),
        ("/graphql/112~233~445~95", "/graphql/***"),
        ("/x/112,233,445:95/y", "/x/***/y"),
        ("/x/+7_912_555_01_02", "/x/+***"),
        ("MyChildren_2", "MyChildren_2"),
    ],
)
def test_safe_text_masks_digit_groups_whatever_separates_them(text: str, expected: str) -> None:
    assert safe_text(text) == expected


async def test_an_operation_named_with_an_underscored_snils_is_logged_masked(
    gql: GraphQL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    payload = await gql("query snils_112_233_445_95 { viewer { role } }", account=ATTACKER)
    assert payload == {"data": {"viewer": {"role": "PARENT"}}}
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert lines and lines[-1].startswith("POST /graphql 200 ")
    assert lines[-1].endswith(" op=snils_***")
    for record in caplog.records:
        assert "112_233_445_95" not in record.getMessage()
        assert "233_445" not in logging.Formatter().format(record)
