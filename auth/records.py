"""The gateway's records: sign-in events and the access audit (append-only tables).

Writers on the request path only enqueue (`Recorder.sign_in`, `Recorder.access`); a
background task writes batches, so recording never adds a statement or a wait to a
request. Identifiers are masked before they are stored; nothing personal is logged.

INTERFACE OWNED BY HELPER REC — this is the contract others code against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

SIGNED_IN = "SIGNED_IN"


@dataclass(frozen=True, slots=True)
class SignInEvent:
    """One sign-in attempt. Raw SNILS/phone are masked by the recorder, never stored."""

    method: str  # ESIA | PASSWORD | REFRESH
    outcome: str  # SIGNED_IN or an ErrorCode value
    snils: str | None = None
    phone: str | None = None
    login: str | None = None
    school_ids: tuple[int, ...] = ()
    account_id: str | None = None
    client_address: str | None = None


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """A request that returned data of these students."""

    at: datetime
    account_id: str
    role: str
    student_ids: tuple[int, ...]
    operation_name: str | None


class Recorder:
    """Queues events and writes them in the background; `flush` waits for the queue."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool

    def sign_in(self, event: SignInEvent) -> None:
        """Queue a sign-in event (non-blocking)."""

    def access(self, event: AccessEvent) -> None:
        """Queue an access-audit row (non-blocking)."""

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""

    async def close(self) -> None:
        """Flush and stop the background writer."""
