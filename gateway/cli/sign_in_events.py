"""`school-gateway sign-in-events`: recent sign-in attempts with masked identifiers, so a
school's staff can answer "why can't this parent sign in" (the support path)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Final

import asyncpg
import orjson

from auth.store.audit import SIGNED_IN
from gateway.cli.common import EXIT_OK, Commands, database, school_id_argument, whole_number
from gateway.core.db import connect_as_gateway
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.identifiers import masked, masked_phone
from gateway.core.settings import Settings

COMMAND: Final = "sign-in-events"
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 10_000
SIGNED_IN_MESSAGE: Final = "Вход выполнен."

_QUERY: Final = """
SELECT e.id, e.at, e.method, e.outcome, e.masked_snils, e.masked_phone, e.login,
       e.school_ids, e.account_id::text AS account_id, e.client_address,
       ARRAY(SELECT coalesce(s.short_name, '?')
             FROM unnest(e.school_ids) WITH ORDINALITY AS u(id, n)
             LEFT JOIN diary_api.schools s ON s.id = u.id
             ORDER BY u.n) AS school_names
FROM gateway.sign_in_events e
WHERE ($1::integer IS NULL OR e.school_ids @> ARRAY[$1::integer])
  AND ($2::text IS NULL OR e.outcome = $2)
  AND ($3::timestamptz IS NULL OR e.at >= $3)
  AND ($4::text IS NULL OR e.masked_snils = $4)
  AND ($5::text IS NULL OR e.masked_phone = $5)
ORDER BY e.at DESC, e.id DESC
LIMIT $6
"""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What to list; None means no condition."""

    school_id: int | None = None
    outcome: str | None = None
    since: datetime | None = None
    masked_snils: str | None = None
    masked_phone: str | None = None
    limit: int = DEFAULT_LIMIT


def register(commands: Commands) -> None:
    """Add `sign-in-events` to the `school-gateway` sub-commands."""
    parser = commands.add_parser(
        COMMAND, help="recent sign-in attempts with masked identifiers (support path)"
    )
    parser.add_argument("--school", type=school_id_argument, metavar="ID", help="school id")
    parser.add_argument(
        "--outcome", type=_outcome, metavar="CODE", help="SIGNED_IN or an error code"
    )
    parser.add_argument("--since", type=_since, metavar="DATE", help="YYYY-MM-DD or date-time")
    parser.add_argument("--snils", type=_snils, help="the person's SNILS (matched masked)")
    parser.add_argument("--phone", type=_phone, help="the person's phone (matched masked)")
    parser.add_argument(
        "--limit", type=_limit, default=DEFAULT_LIMIT, metavar="N", help="newest N (default 50)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=cmd_sign_in_events)


def cmd_sign_in_events(args: argparse.Namespace, settings: Settings) -> int:
    """List sign-in events, newest first: when, how (ESIA, school password, token
    refresh), the outcome with its Russian explanation, the masked SNILS and phone, the
    login and the schools whose registries the person was found in. `--snils`/`--phone`
    match the masked form, so another person with the same last digits can appear.
    Reads as the gateway's role (gateway.sign_in_events, diary_api.schools)."""

    filters = EventFilter(
        school_id=args.school,
        outcome=args.outcome,
        since=args.since,
        masked_snils=args.snils,
        masked_phone=args.phone,
        limit=args.limit,
    )
    with database(settings) as url:
        events = asyncio.run(fetch_sign_in_events(url, settings, filters))
    if args.json:
        sys.stdout.write(orjson.dumps(events, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_events(events))
    return EXIT_OK


async def fetch_sign_in_events(
    url: str, settings: Settings, filters: EventFilter
) -> list[dict[str, Any]]:
    """The matching events, newest first, as plain dicts (JSON-ready)."""
    conn = await connect_as_gateway(url, settings)
    try:
        rows = await conn.fetch(
            _QUERY,
            filters.school_id,
            filters.outcome,
            filters.since,
            filters.masked_snils,
            filters.masked_phone,
            filters.limit,
        )
    finally:
        await conn.close()
    return [_event(row) for row in rows]


def _event(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"].astimezone(UTC).isoformat(),
        "method": row["method"],
        "outcome": row["outcome"],
        "message": outcome_message(row["outcome"]),
        "masked_snils": row["masked_snils"],
        "masked_phone": row["masked_phone"],
        "login": row["login"],
        "school_ids": list(row["school_ids"]),
        "schools": list(row["school_names"]),  # short names, aligned with school_ids
        "account_id": row["account_id"],
        "client_address": row["client_address"],
    }


def outcome_message(outcome: str) -> str:
    """The Russian explanation of an outcome code ('' for an unknown code)."""
    if outcome == SIGNED_IN:
        return SIGNED_IN_MESSAGE
    try:
        return MESSAGES[ErrorCode(outcome)]
    except (ValueError, KeyError):
        return ""


def format_events(events: Sequence[dict[str, Any]]) -> str:
    """A readable block per event, newest first."""
    if not events:
        return "No sign-in events match."
    return "\n\n".join(_format_event(event) for event in events)


def _format_event(event: dict[str, Any]) -> str:
    lines = [f"{event['at']}  {event['method']:<8}  {event['outcome']}"]
    if event["message"]:
        lines.append(f"    {event['message']}")
    who = [
        f"{label}: {event[field]}"
        for label, field in (("SNILS", "masked_snils"), ("phone", "masked_phone"))
        if event[field]
    ]
    if event["login"]:
        who.append(f"login: {event['login']}")
    if event["client_address"]:
        who.append(f"from: {event['client_address']}")
    if who:
        lines.append("    " + ", ".join(who))
    if event["school_ids"]:
        schools = ", ".join(
            f"{name} (id {school_id})"
            for school_id, name in zip(event["school_ids"], event["schools"], strict=True)
        )
        lines.append(f"    found in: {schools}")
    elif event["outcome"] != SIGNED_IN:
        lines.append("    found in: no school registry")
    if event["account_id"]:
        lines.append(f"    account: {event['account_id']}")
    return "\n".join(lines)


# --- argument types --------------------------------------------------------------------


def _outcome(raw: str) -> str:
    code = raw.strip().upper()
    if code != SIGNED_IN and code not in ErrorCode.__members__:
        raise argparse.ArgumentTypeError(
            f"unknown outcome {raw!r}; use SIGNED_IN or an error code such as NOT_IN_REGISTRY"
        )
    return code


def _since(raw: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO date-time (UTC when it names no zone)."""
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected YYYY-MM-DD or an ISO date-time, got {raw!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _snils(raw: str) -> str:
    value = masked(raw)
    if value == "***":
        raise argparse.ArgumentTypeError("expected an 11-digit SNILS")
    return value


def _phone(raw: str) -> str:
    value = masked_phone(raw)
    if not value.startswith("+7"):
        raise argparse.ArgumentTypeError("expected a Russian mobile number (+7XXXXXXXXXX)")
    return value


def _limit(raw: str) -> int:
    value = whole_number(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}, got {value}")
    return value
