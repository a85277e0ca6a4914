"""The test run's constants and the environment of a gateway started by the tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

# The data set's "today": a Friday in the second quarter.
TODAY = date(2026, 11, 27)
SCALE = 1
SEED = 7
JWT_SECRET = "test-secret-test-secret-test-secret-0123456789"
GATEWAY_ROLE = "school_gateway"  # SCHOOL_GATEWAY_DB_ROLE's default

GraphQL = Callable[..., Awaitable[dict[str, Any]]]


def gateway_env(
    database_url: str | None, data_dir: Path, owner_url: str | None = None
) -> dict[str, str]:
    """SCHOOL_GATEWAY_* of a dev-mode gateway on the test database and data folder."""
    env = {
        "SCHOOL_GATEWAY_DEV": "1",
        "SCHOOL_GATEWAY_JWT_SECRET": JWT_SECRET,
        "SCHOOL_GATEWAY_TODAY": TODAY.isoformat(),
        "SCHOOL_GATEWAY_DATA_DIR": str(data_dir),
        "SCHOOL_GATEWAY_GRAPHIQL": "1",
        # The session tests post free queries with the cookie; the registered-documents
        # mode (on by default) is tested in tests/e2e/test_persisted_documents.py.
        "SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY": "0",
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    if owner_url:
        env["DATABASE_OWNER_URL"] = owner_url
    return env
