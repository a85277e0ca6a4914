"""Sign-in problems of a school: attempts of its people by outcome, the newest failures.

"Its people": sign-in events whose `school_ids` (the schools whose registries the
person was found in) contain the school. Identifiers are stored masked already
(auth.store.audit); the login is the school-issued one (or a machine client's id). The
window is `from` 00:00 UTC up to the end of `to` (UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

import strawberry

from gateway.core.errors import MESSAGES, ErrorCode
from resolvers.common.arguments import check_page_size
from resolvers.common.fields import sized
from resolvers.context import Context
from resolvers.dashboard.service import CheckedSchool, DashboardService

Info = strawberry.Info[Context, None]
DEFAULT_PAGE_SIZE = 20
SIGNED_IN = "SIGNED_IN"
SIGNED_IN_MESSAGE = "Вход выполнен."

FirstArg = Annotated[
    int,
    strawberry.argument(
        description="At most this many: 1–500 (default 20; LIMIT_OUT_OF_RANGE outside)."
    ),
]
OutcomeArg = Annotated[
    str | None,
    strawberry.argument(
        description="Only attempts with this outcome, e.g. INVALID_CREDENTIALS; null: any failure."
    ),
]


def day_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """[from 00:00 UTC, the day after `to` 00:00 UTC): the window as instants."""
    start = datetime.combine(date_from, time.min, tzinfo=UTC)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)
    return start, end


def outcome_message(outcome: str) -> str | None:
    """What the person was told for this outcome (Russian); None for an unknown code."""
    if outcome == SIGNED_IN:
        return SIGNED_IN_MESSAGE
    try:
        return MESSAGES[ErrorCode(outcome)]
    except ValueError:
        return None


@strawberry.type(description="Sign-in attempts with one outcome.")
class SignInOutcomeCount:
    outcome: str = strawberry.field(description="SIGNED_IN or the error code of the failure.")
    message: str | None = strawberry.field(description="What the person was told (Russian).")
    attempts: int = strawberry.field(description="Attempts with this outcome in the window.")
    last_at: datetime = strawberry.field(
        description="When the latest attempt with this outcome in the window was made."
    )


@strawberry.type(description="A failed sign-in attempt; identifiers are stored masked only.")
class SignInAttempt:
    id: strawberry.ID = strawberry.field(description="The sign-in event's id.")
    at: datetime = strawberry.field(description="When the attempt was made.")
    method: str = strawberry.field(description="ESIA, PASSWORD, REFRESH or CLIENT.")
    outcome: str = strawberry.field(
        description="The error code of the failure, e.g. INVALID_CREDENTIALS (never SIGNED_IN)."
    )
    message: str | None = strawberry.field(
        description=(
            "What the person was told (Russian); null for an outcome this version does not know."
        )
    )
    masked_snils: str | None = strawberry.field(
        description=(
            "The person's SNILS from ESIA, as «***-***-789 64» («***» when malformed); null "
            "when the attempt had none (only ESIA attempts that got the person's data do)."
        )
    )
    masked_phone: str | None = strawberry.field(
        description=(
            "The person's mobile phone from ESIA, as «+7912***01» (other numbers «***01», or "
            "«***» when shorter than 6 digits); null when the attempt had none."
        )
    )
    login: str | None = strawberry.field(
        description="The school login (password sign-in) or the machine client's id."
    )


async def resolve_recent_failures(
    root: SignInProblems,
    info: Info,
    first: FirstArg = DEFAULT_PAGE_SIZE,
    outcome: OutcomeArg = None,
) -> list[SignInAttempt]:
    """The newest failed attempts (optionally of one outcome), at most `first`."""
    limit = check_page_size(first)
    rows = await info.context.dashboard.failed_sign_ins(
        root.school,
        start=root.start,
        end=root.end,
        outcome=outcome,
        limit=limit,
    )
    return [
        SignInAttempt(
            id=strawberry.ID(str(row["id"])),
            at=row["at"],
            method=row["method"],
            outcome=row["outcome"],
            message=outcome_message(row["outcome"]),
            masked_snils=row["masked_snils"],
            masked_phone=row["masked_phone"],
            login=row["login"],
        )
        for row in rows
    ]


@strawberry.type(description="Sign-in attempts of people found in this school's registries.")
class SignInProblems:
    school: strawberry.Private[CheckedSchool]
    start: strawberry.Private[datetime]
    end: strawberry.Private[datetime]
    attempts: int = strawberry.field(description="Attempts of every outcome in the window.")
    failures: int = strawberry.field(description="Attempts with an outcome other than SIGNED_IN.")
    by_outcome: list[SignInOutcomeCount] = strawberry.field(
        description="Counts per outcome (SIGNED_IN included), most frequent first.",
        metadata=sized(20),
    )
    recent_failures: list[SignInAttempt] = strawberry.field(
        resolver=resolve_recent_failures,
        description=(
            "The newest failed attempts, optionally only of `outcome`; at most `first` (1–500)."
        ),
    )


async def load_sign_in_problems(
    dashboard: DashboardService, school: CheckedSchool, start: datetime, end: datetime
) -> SignInProblems:
    """Counts by outcome in [start, end): one statement (the list is read when selected)."""
    rows = await dashboard.sign_in_counts(school, start=start, end=end)
    by_outcome = [
        SignInOutcomeCount(
            outcome=row["outcome"],
            message=outcome_message(row["outcome"]),
            attempts=row["attempts"],
            last_at=row["last_at"],
        )
        for row in rows
    ]
    return SignInProblems(
        school=school,
        start=start,
        end=end,
        attempts=sum(item.attempts for item in by_outcome),
        failures=sum(item.attempts for item in by_outcome if item.outcome != SIGNED_IN),
        by_outcome=by_outcome,
    )
