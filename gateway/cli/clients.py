"""`school-gateway clients create|list|revoke`: the machine clients (OAuth client
credentials) in gateway.service_clients, as the gateway's role."""

from __future__ import annotations

import argparse
import sys
from typing import Final, TypeVar

import asyncpg
import orjson

from auth.store.clients import (
    ClientRegistrationError,
    CreatedClient,
    ServiceClient,
    create_client,
    list_clients,
    revoke_client,
)
from auth.viewer import CLIENT_ROLES, ROLE_SCOPES, Role
from gateway.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    run_as_gateway,
    school_id_argument,
)
from gateway.core.settings import Settings

COMMAND: Final = "clients"
T = TypeVar("T")


def register(commands: Commands) -> None:
    """Add `clients create|revoke|list` to the `school-gateway` sub-commands."""
    parser = commands.add_parser(COMMAND, help="machine clients (OAuth client credentials)")
    actions = parser.add_subparsers(dest="clients_action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="register a client; prints its id and secret")
    create.add_argument("--name", required=True, help="what the client is (shown in lists)")
    create.add_argument(
        "--role", required=True, type=_role, help="SCHOOL_ADMIN or REGIONAL_ANALYST"
    )
    create.add_argument(
        "--school", dest="schools", type=school_id_argument, action="append", default=[],
        metavar="ID", help="a school a SCHOOL_ADMIN client may see (repeatable)",
    )  # fmt: skip
    scopes = ", ".join(sorted(set().union(*(ROLE_SCOPES[role] for role in CLIENT_ROLES))))
    create.add_argument(
        "--scope", dest="scopes", action="append", default=[], metavar="S",
        help=f"an OAuth scope (repeatable; default: all of the role's): {scopes}",
    )  # fmt: skip
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(handler=cmd_clients_create)

    revoke = actions.add_parser("revoke", help="revoke a client (its tokens stop working)")
    revoke.add_argument("client_id", metavar="CLIENT_ID")
    revoke.set_defaults(handler=cmd_clients_revoke)

    listing = actions.add_parser("list", help="list clients (never secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_clients_list)


def cmd_clients_create(args: argparse.Namespace, settings: Settings) -> int:
    """Register a client and print its id and secret: shown this once, only its SHA-256
    is stored. Without `--scope` the client gets every scope of its role."""

    async def create(conn: asyncpg.Connection) -> CreatedClient:
        return await create_client(
            conn, name=args.name, role=args.role, school_ids=args.schools, scopes=args.scopes
        )

    try:
        created = run_as_gateway(settings, create)
    except ClientRegistrationError as error:
        raise CliError(str(error), exit_code=EXIT_USAGE) from None
    client = created.client
    if args.json:
        payload = {**client.public(), "client_secret": created.secret}
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(f"client_id:     {client.client_id}")
        print(f"client_secret: {created.secret}")
        print(f"role:          {_describe(client)}")
        print("The secret is shown only now; store it in the client's configuration.")
    return EXIT_OK


def cmd_clients_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a client: its tokens stop working on their next request."""

    async def revoke(conn: asyncpg.Connection) -> bool:
        return await revoke_client(conn, args.client_id)

    if not run_as_gateway(settings, revoke):
        raise CliError(f"no client {args.client_id!r}")
    print(f"Client {args.client_id} revoked.")
    return EXIT_OK


def cmd_clients_list(args: argparse.Namespace, settings: Settings) -> int:
    """Every client with role, schools, scopes, created/revoked (never a secret)."""
    clients = run_as_gateway(settings, list_clients)
    if args.json:
        payload = [client.public() for client in clients]
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    if not clients:
        print("No clients.")
    for client in clients:
        state = f"revoked {client.revoked_at:%Y-%m-%d %H:%M}" if client.revoked_at else "active"
        print(f"{client.client_id}  {state:<24}  {client.name}")
        print(f"    {_describe(client)}; created {client.created_at:%Y-%m-%d %H:%M}")
    return EXIT_OK


def _describe(client: ServiceClient) -> str:
    schools = f", schools {', '.join(map(str, client.school_ids))}" if client.school_ids else ""
    return f"{client.role.value}{schools}; scopes {' '.join(sorted(client.scopes))}"


def _role(raw: str) -> Role:
    try:
        role = Role(raw.strip().upper())
    except ValueError:
        role = None
    if role not in CLIENT_ROLES:
        raise argparse.ArgumentTypeError("expected SCHOOL_ADMIN or REGIONAL_ANALYST")
    assert role is not None
    return role
