"""The development commands over the stand-in school database: demo, seed, migrate,
accounts, dev-token. The only CLI module that imports `fixtures` (lazily, per command)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson

from gateway.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    database,
    database_location,
    port_number,
    positive,
)
from gateway.core.settings import Settings

if TYPE_CHECKING:
    from gateway.migrations.location import DatabaseLocation


def register_demo(commands: Commands) -> None:
    """Add `demo` to the `school-gateway` sub-commands."""
    demo = commands.add_parser("demo", help="dev mode: embedded database with demo data, serve")
    demo.add_argument("--port", type=port_number, help="listen port (default SCHOOL_GATEWAY_PORT)")
    demo.add_argument("--scale", type=positive, default=1, help="data scale on first start")
    demo.add_argument("--seed", type=int, default=1, help="random seed on first start")
    demo.set_defaults(handler=cmd_demo)


def register_seed(commands: Commands) -> None:
    """Add `seed` to the `school-gateway` sub-commands."""
    seed = commands.add_parser("seed", help="generate the school data (replaces it)")
    seed.add_argument("--scale", type=positive, default=1, help="1 = a few schools (default 1)")
    seed.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    seed.add_argument("--today", type=_iso_date, default=None, help="YYYY-MM-DD (default today)")
    seed.add_argument("--yes", action="store_true", help="replace existing data without asking")
    seed.set_defaults(handler=cmd_seed)


def register_migrate(commands: Commands) -> None:
    """Add `migrate` to the `school-gateway` sub-commands."""
    migrate = commands.add_parser(
        "migrate", help="create or update the gateway's schema, views and grants (idempotent)"
    )
    migrate.set_defaults(handler=cmd_migrate)


def register_accounts(commands: Commands) -> None:
    """Add `accounts` to the `school-gateway` sub-commands."""
    accounts = commands.add_parser("accounts", help="list the demo accounts")
    accounts.add_argument("--json", action="store_true", help="print JSON")
    accounts.set_defaults(handler=cmd_accounts)


def register_dev_token(commands: Commands) -> None:
    """Add `dev-token` to the `school-gateway` sub-commands."""
    token = commands.add_parser("dev-token", help="print a bearer token for a demo account")
    token.add_argument("account", metavar="ACCOUNT", help="demo account key (see `accounts`)")
    token.set_defaults(handler=cmd_dev_token)


# --- commands --------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Serve in dev mode; the embedded database is seeded on first start."""
    import uvicorn

    from gateway.app import create_app
    from gateway.http.serving import gateway_config

    port = args.port or settings.port
    if settings.database_url is None:
        print(f"Data folder: {settings.data_dir}")
    with database_location(settings) as location:
        seeded_today = asyncio.run(_prepare_demo(location, settings, args))
        if settings.today_override is None:
            settings = dataclasses.replace(settings, today_override=seeded_today)
        app = create_app(dataclasses.replace(settings, database_url=location.url))
        # As `serve`: header timeout, proxy headers only from trusted proxies.
        config = gateway_config(app, settings, host=settings.host, port=port)
        uvicorn.Server(config).run()
    return EXIT_OK


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    """Generate the school data as the schema owner (asks before replacing data)."""
    today: date = args.today or date.today()
    with database_location(settings) as location:
        existing = asyncio.run(_describe_existing_data(location.owner_url, settings))
        if existing is not None:
            _confirm_replace(existing, assume_yes=args.yes)
        asyncio.run(
            _seed(location.owner_url, settings, scale=args.scale, seed=args.seed, today=today)
        )
    print(f"Seeded scale {args.scale}, seed {args.seed}, today {today.isoformat()}.")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the bundled SQL as the schema owner and (re)create the login role."""
    with database_location(settings) as location:
        asyncio.run(_migrate(location.owner_url, settings))
    print(
        f"Schema, read-contract views, the login role {settings.gateway_role} "
        "and its grants are up to date."
    )
    return EXIT_OK


def cmd_accounts(args: argparse.Namespace, settings: Settings) -> int:
    """List the demo accounts."""
    with database(settings) as url:
        rows = asyncio.run(_account_rows(url))
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_accounts(rows))
    return EXIT_OK


def cmd_dev_token(args: argparse.Namespace, settings: Settings) -> int:
    """Print a bearer token for a demo account (dev mode only)."""
    from fixtures.demo import demo_account

    if not settings.dev_mode:
        raise CliError(
            "dev-token is refused outside dev mode (set SCHOOL_GATEWAY_DEV=1)",
            exit_code=EXIT_USAGE,
        )
    try:
        account = demo_account(args.account)
    except KeyError as error:
        raise CliError(str(error.args[0]), exit_code=EXIT_USAGE) from None
    with database(settings) as url:
        tokens = asyncio.run(_issue_tokens(url, settings, [account.key]))
    print(tokens[account.key])
    return EXIT_OK


# --- schema and seeding (as the schema owner) ------------------------------------------


async def _migrate(owner_url: str, settings: Settings) -> None:
    """Apply the bundled SQL (tables, views, the login role, grants); safe on a database
    already set up. With DATABASE_URL and DATABASE_OWNER_URL both set, the login role
    gets DATABASE_URL's password."""
    from fixtures.database import apply_schema

    conn = await _owner_connection(owner_url, settings)
    try:
        await apply_schema(
            conn, gateway_role=settings.gateway_role, gateway_password=_login_password(settings)
        )
    finally:
        await conn.close()


async def _owner_connection(owner_url: str, settings: Settings) -> asyncpg.Connection:
    """A connection as the schema owner; the gateway's own login is refused."""
    conn = await asyncpg.connect(owner_url)
    if await conn.fetchval("SELECT session_user") == settings.gateway_role:
        await conn.close()
        raise CliError(
            f"the database URL logs in as the gateway's role {settings.gateway_role}, which "
            "may not change the schema: set DATABASE_OWNER_URL to the schema owner's DSN",
            exit_code=EXIT_USAGE,
        )
    return conn


def _login_password(settings: Settings) -> str | None:
    """The password in DATABASE_URL when it is the gateway's login and another DSN is the
    owner's (DATABASE_OWNER_URL): `migrate` and `seed` give it to the login role."""
    url, owner = settings.database_url, settings.database_owner_url
    if url is None or owner is None or owner == url:
        return None
    parts = urlsplit(url)
    if unquote(parts.username or "") != settings.gateway_role or not parts.password:
        return None
    return unquote(parts.password)


@dataclasses.dataclass(frozen=True, slots=True)
class SeedState:
    """What is in the database before seeding."""

    scale: int | None
    seed: int | None
    today: date | None
    students: int


async def _describe_existing_data(owner_url: str, settings: Settings) -> SeedState | None:
    conn = await _owner_connection(owner_url, settings)
    try:
        info = await _seed_info(conn)
        students = 0
        if await conn.fetchval("SELECT to_regclass('school.students') IS NOT NULL"):
            students = await conn.fetchval("SELECT count(*) FROM school.students")
    finally:
        await conn.close()
    if info is None and not students:
        return None
    return SeedState(
        scale=info["scale"] if info else None,
        seed=info["seed"] if info else None,
        today=info["today"] if info else None,
        students=int(students),
    )


async def _seed_info(conn: asyncpg.Connection) -> asyncpg.Record | None:
    if not await conn.fetchval("SELECT to_regclass('gateway.seed_info') IS NOT NULL"):
        return None
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT scale, seed, today FROM gateway.seed_info"
    )
    return row


async def _stored_seed_info(url: str) -> asyncpg.Record | None:
    """`gateway.seed_info`'s row on a connection of its own (None before seeding)."""
    conn = await asyncpg.connect(url)
    try:
        return await _seed_info(conn)
    finally:
        await conn.close()


def _confirm_replace(existing: SeedState, *, assume_yes: bool) -> None:
    what = f"{existing.students} students"
    if existing.scale is not None:
        what += f" (scale {existing.scale}, seed {existing.seed}, today {existing.today})"
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            f"the database already holds school data: {what}; pass --yes to replace it",
            exit_code=EXIT_USAGE,
        )
    answer = input(f"The database holds {what}. Replace it? [y/N] ")
    if answer.strip().lower() not in {"y", "yes", "д", "да"}:
        raise CliError("nothing changed", exit_code=EXIT_USAGE)


async def _seed(url: str, settings: Settings, *, scale: int, seed: int, today: date) -> None:
    from fixtures.generate import seed as generate

    await generate(
        url,
        scale=scale,
        seed=seed,
        today=today,
        gateway_role=settings.gateway_role,
        gateway_password=_login_password(settings),
        progress=print,
    )


# --- demo ------------------------------------------------------------------------------


async def _prepare_demo(
    location: DatabaseLocation, settings: Settings, args: argparse.Namespace
) -> date:
    """Seed on first start (as the owner), print the accounts with tokens (as the
    gateway's login role); returns the data set's today."""
    owner_url, url = location.owner_url, location.url
    info = await _stored_seed_info(owner_url)
    if info is None:
        if settings.database_url is not None:
            raise CliError(
                "DATABASE_URL has no demo data; run `school-gateway seed` against it first "
                "(demo never writes to a database it did not create)",
                exit_code=EXIT_USAGE,
            )
        print(f"First start: generating demo data (scale {args.scale}, seed {args.seed})...")
        await _seed(owner_url, settings, scale=args.scale, seed=args.seed, today=settings.today())
        info = await _stored_seed_info(url)
        if info is None:
            raise CliError("seeding finished but gateway.seed_info is empty")
    elif settings.database_url is None:
        # A data folder from an older version: bring its tables, views and grants up to
        # date (its login role was made ready when the server was located).
        await _migrate(owner_url, settings)
    rows = await _account_rows(url)
    tokens = await _issue_tokens(url, settings, [str(row["key"]) for row in rows])
    today: date = info["today"]
    _print_demo_guide(settings, rows, tokens, today)
    return today


def _print_demo_guide(
    settings: Settings, rows: Sequence[Mapping[str, Any]], tokens: Mapping[str, str], today: date
) -> None:
    """The accounts, their tokens and where to go next."""
    print(format_accounts(rows))
    print()
    minutes = settings.jwt_ttl_seconds // 60
    print(f"Dev tokens (header `Authorization: Bearer <token>`; valid {minutes} min,")
    print("each its own revocable session: POST /auth/logout with the header ends it):")
    for key, token in tokens.items():
        print(f"  {key}: {token}")
    print()
    print(f"Diary date (the data set's today): {today}")
    base = settings.auth.public_url
    print(f"GraphiQL: {base}/graphql (a token above goes into its Headers)")
    print(f"Web pages: {base}/ (after sign-in: parents and students /diary, school IT admins")
    print("/school, regional analysts /analytics)")
    print(f"Sign in in a browser: {base}/auth/login (school login and password, students")
    print("under 14.5), or «Вход для пользователей старше 14,5 лет» on that page: ESIA")
    if settings.auth.dev_idp:
        from fixtures.dev_idp import DEV_IDP_PASSWORD

        print("through the development identity provider: pick a person with a SNILS")
        print(f"above, password {DEV_IDP_PASSWORD!r}.")


async def _account_rows(url: str) -> list[dict[str, object]]:
    from fixtures.demo_listing import demo_account_rows

    conn = await asyncpg.connect(url)
    try:
        if await _seed_info(conn) is None:
            raise CliError("no demo data: run `school-gateway demo` or `school-gateway seed`")
        rows = await demo_account_rows(conn)
    finally:
        await conn.close()
    return [row.as_dict() for row in rows]


async def _issue_tokens(url: str, settings: Settings, keys: Sequence[str]) -> dict[str, str]:
    from auth.store.accounts import AccountNotFoundError, ensure_demo_account
    from auth.store.sessions import issue_dev_token
    from fixtures.demo import demo_account
    from gateway.core.db import create_pool

    pool = await create_pool(url, dataclasses.replace(settings, pool_min_size=1))
    try:
        tokens: dict[str, str] = {}
        for key in keys:
            account_id = await ensure_demo_account(pool, demo_account(key))
            tokens[key] = await issue_dev_token(pool, settings, account_id)
    except AccountNotFoundError as error:
        raise CliError(str(error)) from None
    finally:
        await pool.close()
    return tokens


def format_accounts(rows: Sequence[Mapping[str, Any]]) -> str:
    """The demo accounts as a readable block per account."""
    blocks = []
    for row in rows:
        lines = [f"{row['key']}  [{row['role']}]  {row['full_name']}", f"    {row['description']}"]
        for label, field in (("SNILS", "snils"), ("phone", "phone"), ("school", "school")):
            if row.get(field):
                lines.append(f"    {label}: {row[field]}")
        if row.get("login"):
            lines.append(f"    login / password: {row['login']} / {row.get('password')}")
        for child in row.get("children") or ():
            relation = "student" if row["role"] == "STUDENT" else "child"
            lines.append(
                f"    {relation}: {child['full_name']}, {child['class_name']}, {child['school']}"
                f" (id {child['student_id']})"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _iso_date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {raw!r}") from None
