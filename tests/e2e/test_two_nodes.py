"""Two `serve` processes on different ports over one database behave as one service
(issue 15): a session signed in on one is read on the other, its logout on one is refused
on the other at its next request, and password sign-in throttling is shared."""

from __future__ import annotations

from pathlib import Path

import httpx

from fixtures.generate import SeedSummary
from tests.support.environment import TODAY
from tests.support.password_signin import PLANTED_PASSWORD, PlantedStudent
from tests.support.serve_process import command_env, free_port, serving

VIEWER = {"query": "query Me { viewer { role } }"}


def _codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json().get("errors", [])]


def test_sessions_and_throttling_are_shared_by_two_processes(
    database_url: str, tmp_path: Path, planted: PlantedStudent, seeded: SeedSummary
) -> None:
    env = command_env(
        database_url,
        tmp_path,
        SCHOOL_GATEWAY_DEV="1",
        SCHOOL_GATEWAY_TODAY=TODAY.isoformat(),
        SCHOOL_GATEWAY_LOGIN_MAX_FAILURES="3",
    )
    first, second = free_port(), free_port()
    with (
        serving(env, first),
        serving(env, second),
        httpx.Client(base_url=f"http://127.0.0.1:{first}", timeout=10) as a,
        httpx.Client(base_url=f"http://127.0.0.1:{second}", timeout=10) as b,
        # A browser of its own on the first process, without the sign-in's device cookie.
        httpx.Client(base_url=f"http://127.0.0.1:{first}", timeout=10) as c,
    ):
        signed_in = a.post(
            "/auth/login", json={"login": planted.login, "password": PLANTED_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        read = b.post("/graphql", json=VIEWER, headers=bearer)
        assert read.json()["data"] == {"viewer": {"role": "STUDENT"}}, read.text

        assert a.post("/auth/logout", headers=bearer).status_code == 204
        after = b.post("/graphql", json=VIEWER, headers=bearer)
        assert (after.status_code, _codes(after)) == (401, ["SESSION_REVOKED"])

        for node in (c, b, c):  # three failures without a device cookie, on both processes
            wrong = node.post("/auth/login", json={"login": planted.login, "password": "nope"})
            assert _codes(wrong) == ["INVALID_CREDENTIALS"], wrong.text
        locked = b.post("/auth/login", json={"login": planted.login, "password": PLANTED_PASSWORD})
        assert _codes(locked) == ["SIGN_IN_LOCKED"], locked.text
