"""`school-gateway rotate-signing-key` and `school-gateway signing-keys`: the shared key set
of the gateway's tokens (gateway.signing_keys; auth.store.signing_keys), as the gateway's
role (the listing) or the schema owner's (the rotation: the gateway's role may only read
gateway.signing_keys; DATABASE_OWNER_URL, as for `migrate`). Only kids, states and dates:
keys are derived from SCHOOL_GATEWAY_JWT_SECRET (gateway.core.signing_keys), so neither
command needs or shows a secret.

A rotation is refused while the current key is younger than the longest token lifetime
(the largest of SCHOOL_GATEWAY_SESSION_TTL, SCHOOL_GATEWAY_JWT_TTL and
SCHOOL_GATEWAY_CLIENT_TOKEN_TTL) plus twice SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S (a node
whose reload failed retries one interval later; auth.store.signing_keys): it would retire
the previous key while tokens it signed may still be valid. `--force` rotates anyway
(after a leaked key: twice, and every token of the leaked key is refused). Run the command
with the nodes' settings, so that it knows their lifetimes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

import asyncpg
import orjson

from auth.store.signing_keys import Rotation, RotationTooSoon, SigningKeyRow, list_keys, rotate
from gateway.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    database_location,
    run_as_gateway,
)
from gateway.core.settings import Settings
from gateway.core.signing_keys import LEGACY_KID

ROTATE_COMMAND: Final = "rotate-signing-key"
LIST_COMMAND: Final = "signing-keys"
T = TypeVar("T")


def register(commands: Commands) -> None:
    """Add `rotate-signing-key` and `signing-keys` to the `school-gateway` sub-commands."""
    rotate_parser = commands.add_parser(
        ROTATE_COMMAND, help="make a new token signing key current (the previous one retires)"
    )
    rotate_parser.add_argument(
        "--force",
        action="store_true",
        help="rotate even if the key that retires may have signed tokens still valid",
    )
    rotate_parser.add_argument("--json", action="store_true", help="print JSON")
    rotate_parser.set_defaults(handler=cmd_rotate_signing_key)
    listing = commands.add_parser(LIST_COMMAND, help="list the token signing keys (no secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_signing_keys)


def min_key_age(settings: Settings) -> timedelta:
    """How old the current key must be before a rotation may retire the previous one: the
    longest token lifetime plus two reload intervals (see auth.store.signing_keys)."""
    longest = max(
        settings.auth.session_ttl_seconds,
        settings.auth.access_ttl_seconds,
        settings.client_token_ttl_seconds,
    )
    return timedelta(seconds=longest + 2 * settings.signing_keys.settings.reload_s)


def cmd_rotate_signing_key(args: argparse.Namespace, settings: Settings) -> int:
    """Rotate and print the new current kid, the new previous one and the one retired."""
    minimum = min_key_age(settings)

    async def work(conn: asyncpg.Connection) -> Rotation:
        return await rotate(conn, min_age_s=minimum.total_seconds(), force=args.force)

    try:
        rotation = _run_as_owner(settings, work)
    except RotationTooSoon as error:
        raise CliError(
            f"refused: the current signing key {error.current} is only {_span(error.age)} old; "
            f"rotating now would retire key {error.retiring}, whose tokens may be valid until "
            f"{_when(error.allowed_at)} (the longest token lifetime plus twice "
            f"SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S: {_span(minimum)}). Rotate after that, "
            "or pass --force to refuse those tokens now"
        ) from None
    next_at = rotation.created_at + minimum
    if args.json:
        payload = {
            "current": rotation.current,
            "previous": rotation.previous,
            "retired": rotation.retired,
            "created_at": rotation.created_at.isoformat(),
            "next_rotation_at": next_at.isoformat(),
        }
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    reload_s = settings.signing_keys.settings.reload_s
    print(f"current:  {rotation.current} (new: signs every token from now on)")
    print(f"previous: {rotation.previous or '-'} (still accepted until the next rotation)")
    print(f"retired:  {rotation.retired or '-'}")
    print(
        f"Every node signs with the new key within {reload_s} s "
        "(SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S) and accepts it at once. "
        f"Next rotation possible from {_when(next_at)} without --force."
    )
    return EXIT_OK


def cmd_signing_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Every key's kid, state and dates: current, previous, then retired (never a key)."""
    keys = run_as_gateway(settings, list_keys)
    if args.json:
        payload = [_public(key) for key in keys]
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    if not keys:
        print(f"No rotation yet: tokens are signed with key {LEGACY_KID} (the secret itself).")
        return EXIT_OK
    print(f"{'KID':<16}  {'STATE':<8}  {'CREATED':<23}  RETIRED")
    for key in keys:
        retired = _when(key.retired_at) if key.retired_at else ""
        print(
            f"{key.kid:<16}  {key.state.value:<8}  {_when(key.created_at):<23}  {retired}".rstrip()
        )
    return EXIT_OK


def _public(key: SigningKeyRow) -> dict[str, str | None]:
    return {
        "kid": key.kid,
        "state": key.state.value,
        "created_at": key.created_at.isoformat(),
        "retired_at": None if key.retired_at is None else key.retired_at.isoformat(),
    }


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min {rest % 60:02d} s"


def _run_as_owner(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`work` on a connection as the schema owner (DATABASE_OWNER_URL, else DATABASE_URL,
    else the embedded server's superuser); refused when that logs in as the gateway."""

    async def main(url: str) -> T:
        conn = await asyncpg.connect(url)
        try:
            if await conn.fetchval("SELECT session_user") == settings.gateway_role:
                raise CliError(
                    f"the database URL logs in as the gateway's role {settings.gateway_role}, "
                    "which may only read the signing keys: set DATABASE_OWNER_URL to the "
                    "schema owner's DSN",
                    exit_code=EXIT_USAGE,
                )
            return await work(conn)
        finally:
            await conn.close()

    with database_location(settings) as location:
        return asyncio.run(main(location.owner_url))
