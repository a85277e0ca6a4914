"""`school-gateway analytics-refresh`: rebuild the regional analytics' units now
(for cron or after a bulk load; the gateway also rebuilds them on its own)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Final

import orjson

from gateway.cli.common import EXIT_OK, Commands, database
from gateway.core.settings import Settings
from resolvers.analytics.service import refresh_cells

COMMAND: Final = "analytics-refresh"


def register(commands: Commands) -> None:
    """Add `analytics-refresh` to the `school-gateway` sub-commands."""
    parser = commands.add_parser(COMMAND, help="rebuild the regional analytics' units now")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="place every cell afresh (units are kept for the school year otherwise: use at "
        "the start of a year or after correcting the journal's past)",
    )
    parser.set_defaults(handler=cmd_analytics_refresh)


def cmd_analytics_refresh(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh as of the diary's today, as the gateway's role, and print when and how long
    it took (SCHOOL_GATEWAY_ANALYTICS_REFRESH_SECONDS sets the gateway's own schedule)."""
    with database(settings) as url:
        result = asyncio.run(refresh_cells(url, settings, restart=args.restart))
    summary = {
        "refreshed_at": result.refreshed_at.isoformat(),
        "as_of": result.as_of.isoformat(),
        "duration_ms": result.duration_ms,
        "min_group_size": result.min_group_size,
    }
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        print(
            f"Analytics refreshed at {summary['refreshed_at']} as of {summary['as_of']} "
            f"in {result.duration_ms} ms (units of at least {result.min_group_size} students)."
        )
    return EXIT_OK
