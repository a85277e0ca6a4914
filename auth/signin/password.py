"""Sign-in with a school-issued login and password: students younger than 14.5.

The order of a sign-in attempt (`PasswordSignIn.attempt`):

1. The login is looked up in diary_api.student_identities (so that even a refused
   attempt is recorded with the student's school).
2. Throttle (auth.store.throttle): refused while the login is locked for untrusted clients
   or, for a client with a device cookie of this login (auth.signin.device_cookie), while that
   cookie is locked (429 SIGN_IN_LOCKED); otherwise the attempt is counted and may be
   delayed (a client address is never refused, only slowed down). Then the
   password is checked with argon2 in a worker thread. An unknown login (or a student
   without a password) is checked against a dummy hash made with the same parameters,
   so it costs the same time as a wrong password; both get 401 INVALID_CREDENTIALS
   with the same message.
3. Only with the right password is the age looked at (a wrong password learns nothing
   about it): see `may_use_password`. Older students get 403 STUDENT_MUST_USE_ESIA.
4. The student's gateway account is created or refreshed; the caller starts a session.

Age rule: a student may sign in with a password while the request's day ("today",
`settings.today()`) is before the day they turn 14.5, i.e. while
`today < birth_date + 14 years + 6 calendar months`, the sum taken as in
dateutil's relativedelta: move 174 months ahead and, when that month is shorter than
the birth day, use its last day (born 31 Aug 2012 → 14.5 on 28 Feb 2027; born
29 Feb 2012 → 29 Aug 2026). On that day and after, ESIA only.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Final

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from auth.signin.deps import AuthServices
from auth.store.accounts import upsert_student_account
from auth.store.matching import Student, find_student
from auth.store.throttle import Admission, SignInThrottle
from gateway.core.errors import ErrorCode

PASSWORD_AGE_LIMIT_MONTHS: Final = 14 * 12 + 6
MAX_LOGIN_LENGTH: Final = 100
MAX_PASSWORD_LENGTH: Final = 256


def add_months(day: date, months: int) -> date:
    """`day` moved `months` calendar months ahead, clamped to the last day of that month."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def password_sign_in_ends(birth_date: date) -> date:
    """The day a student turns 14.5: from then on they sign in through ESIA only."""
    return add_months(birth_date, PASSWORD_AGE_LIMIT_MONTHS)


def may_use_password(birth_date: date, today: date) -> bool:
    """Whether a student born on `birth_date` may sign in with a password on `today`."""
    return today < password_sign_in_ends(birth_date)


@dataclass(frozen=True, slots=True)
class PasswordOutcome:
    """The result of an attempt: `code` None means signed in (then `account_id` is set)."""

    code: ErrorCode | None
    status: int
    student: Student | None = None
    account_id: str | None = None
    retry_after: int | None = None
    trusted: bool = False  # admitted by a device cookie of this login

    @property
    def school_ids(self) -> tuple[int, ...]:
        return () if self.student is None else (self.student.school_id,)


class PasswordVerifier:
    """argon2 checks in worker threads, at most `concurrency` at a time (64 MiB each)."""

    def __init__(self, concurrency: int | None = None) -> None:
        self._hasher = PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency or max(2, os.cpu_count() or 2))
        self._dummy: str | None = None

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether `password` matches; None (no such login) costs the same and is False."""
        async with self._slots:
            if self._dummy is None:
                # The generator's (and this hasher's) parameters: argon2-cffi's defaults.
                self._dummy = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
            return await asyncio.to_thread(self._check, stored_hash, self._dummy, password)

    def _check(self, stored_hash: str | None, dummy: str, password: str) -> bool:
        if stored_hash is not None:
            try:
                return self._hasher.verify(stored_hash, password)
            except VerificationError:  # includes VerifyMismatchError
                return False
            except InvalidHashError:
                pass  # a malformed stored hash: as costly as a mismatch, and refused
        with contextlib.suppress(VerificationError):
            self._hasher.verify(dummy, password)
        return False


class PasswordSignIn:
    """Password sign-in of one application (its throttle and verifier)."""

    def __init__(self, services: AuthServices) -> None:
        self._services = services
        self._throttle = SignInThrottle(services.settings.auth)
        self._verifier = PasswordVerifier()

    async def attempt(
        self, login: str, password: str, *, address: str, device: str | None = None
    ) -> PasswordOutcome:
        """Check a login and password from `address`; see the module docstring.

        `device` is the nonce of a valid device cookie for this login, if any.
        """
        pool = self._services.pool()
        student = await find_student(pool, login=login)
        admission = await self._throttle.admit(pool, login=login, address=address, device=device)
        trusted = admission.trusted
        if not admission.allowed:
            return PasswordOutcome(
                ErrorCode.SIGN_IN_LOCKED,
                429,
                student,
                retry_after=admission.retry_after,
                trusted=trusted,
            )
        if admission.delay_seconds > 0:
            await asyncio.sleep(admission.delay_seconds)
        stored_hash = None if student is None else student.password_hash
        matches = await self._verifier.verify(stored_hash, password)
        if student is None or not matches:
            return PasswordOutcome(ErrorCode.INVALID_CREDENTIALS, 401, student, trusted=trusted)
        return await self._verified(pool, student, admission)

    async def _verified(
        self, pool: asyncpg.Pool, student: Student, admission: Admission
    ) -> PasswordOutcome:
        await self._throttle.succeeded(pool, admission)
        trusted = admission.trusted
        if not may_use_password(student.birth_date, self._services.settings.today()):
            return PasswordOutcome(ErrorCode.STUDENT_MUST_USE_ESIA, 403, student, trusted=trusted)
        account_id = await upsert_student_account(
            pool, student_id=student.student_id, display_name=student.display_name
        )
        return PasswordOutcome(None, 200, student, account_id=account_id, trusted=trusted)
