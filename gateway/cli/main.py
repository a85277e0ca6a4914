"""`school-gateway` (also `python -m gateway`): serve, demo, seed, accounts, export-schema,
dev-token.

Settings come from the environment and are validated first: a bad setting is one line on
stderr and exit code 2. With DATABASE_URL the commands use that server and touch nothing
else; without it they use the embedded PostgreSQL in the data folder (started on demand,
stopped again by the command that started it).

Database roles (docs/read-contract.md): `serve`, `demo` and the commands that act as the
gateway connect as its least-privilege login role (DATABASE_URL, or the embedded
server's login role with the password kept in the data folder); a superuser DSN is
refused. `seed` and `migrate` connect as the schema owner (DATABASE_OWNER_URL, or
DATABASE_URL as before, or the embedded server's superuser) and (re)create the login
role.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson

from gateway.cli.analytics import register as register_analytics
from gateway.cli.clients import register as register_clients
from gateway.cli.sign_in_events import register as register_sign_in_events
from gateway.core.db_roles import UnsafeLoginError
from gateway.core.embedded import EmbeddedPostgresError
from gateway.core.logging import configure_logging
from gateway.core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from gateway.migrations.location import DatabaseLocation

PROG = "school-gateway"
DEV_SECRET_FILE = "dev-jwt-secret"
ENV_PREFIX = "SCHOOL_GATEWAY_"
SECRET_VARIABLE = "SCHOOL_GATEWAY_JWT_SECRET"
SIGNING_COMMANDS = frozenset({"serve", "demo", "dev-token"})
_MIN_SECRET_BYTES = 32
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure the user can act on: printed as one line, no traceback."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


Command = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `school-gateway` command."""
    args = build_parser().parse_args(argv)
    _apply_listen_flags(args)
    try:
        settings = load_settings(args.command)
    except SettingsError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    command: Command = args.handler
    try:
        return command(args, settings)
    except CliError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.exit_code
    except UnsafeLoginError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as error:
        print(f"{PROG}: database error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _apply_listen_flags(args: argparse.Namespace) -> None:
    """`--host`/`--port` count as SCHOOL_GATEWAY_HOST/PORT before the settings are read,
    so everything derived from them (the public URL, the ESIA redirect URI, the dev
    identity provider's address, the allowed Origin) follows, in workers too."""
    for flag, variable in (("host", "SCHOOL_GATEWAY_HOST"), ("port", "SCHOOL_GATEWAY_PORT")):
        value = getattr(args, flag, None)
        if value:
            os.environ[variable] = str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="GraphQL gateway over a regional school journal database."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve GraphQL (DATABASE_URL or embedded)")
    serve.add_argument("--host", help="listen address (default SCHOOL_GATEWAY_HOST)")
    serve.add_argument("--port", type=_port, help="listen port (default SCHOOL_GATEWAY_PORT)")
    serve.add_argument("--workers", type=_positive, default=1, help="worker processes (default 1)")
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser("demo", help="dev mode: embedded database with demo data, serve")
    demo.add_argument("--port", type=_port, help="listen port (default SCHOOL_GATEWAY_PORT)")
    demo.add_argument("--scale", type=_positive, default=1, help="data scale on first start")
    demo.add_argument("--seed", type=int, default=1, help="random seed on first start")
    demo.set_defaults(handler=cmd_demo)

    seed = commands.add_parser("seed", help="generate the school data (replaces it)")
    seed.add_argument("--scale", type=_positive, default=1, help="1 = a few schools (default 1)")
    seed.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    seed.add_argument("--today", type=_iso_date, default=None, help="YYYY-MM-DD (default today)")
    seed.add_argument("--yes", action="store_true", help="replace existing data without asking")
    seed.set_defaults(handler=cmd_seed)

    migrate = commands.add_parser(
        "migrate", help="create or update the gateway's schema, views and grants (idempotent)"
    )
    migrate.set_defaults(handler=cmd_migrate)

    accounts = commands.add_parser("accounts", help="list the demo accounts")
    accounts.add_argument("--json", action="store_true", help="print JSON")
    accounts.set_defaults(handler=cmd_accounts)

    export = commands.add_parser("export-schema", help="print the GraphQL SDL")
    export.set_defaults(handler=cmd_export_schema)

    token = commands.add_parser("dev-token", help="print a bearer token for a demo account")
    token.add_argument("account", metavar="ACCOUNT", help="demo account key (see `accounts`)")
    token.set_defaults(handler=cmd_dev_token)

    register_sign_in_events(commands)
    register_clients(commands)
    register_analytics(commands)
    return parser


def load_settings(command: str, env: Mapping[str, str] | None = None) -> Settings:
    """Validated settings for `command`.

    `demo` forces dev mode. Commands that sign tokens (serve, demo, dev-token) need the
    JWT key; in dev mode without one, a key kept in the data folder is used, shared by
    every command and worker on this machine, so a `dev-token` works against a running
    `demo` or `serve`. Other commands never sign anything and do not need a key.
    """
    environment = dict(os.environ if env is None else env)
    if command == "demo":
        environment["SCHOOL_GATEWAY_DEV"] = "1"
    signs_tokens = command in SIGNING_COMMANDS
    if not signs_tokens and not environment.get(SECRET_VARIABLE):
        environment[SECRET_VARIABLE] = secrets.token_urlsafe(32)  # never used to sign
    settings = Settings.from_env(environment)
    if settings.dev_mode and not environment.get(SECRET_VARIABLE):
        environment[SECRET_VARIABLE] = _dev_secret(settings.data_dir)
        settings = Settings.from_env(environment)
    if signs_tokens and env is None:
        # Worker processes read the same settings from the environment.
        os.environ.update({k: v for k, v in environment.items() if k.startswith(ENV_PREFIX)})
    return settings


def _dev_secret(data_dir: Path) -> str:
    path = data_dir / DEV_SECRET_FILE
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = ""
    if len(secret.encode()) < _MIN_SECRET_BYTES:
        data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(_MIN_SECRET_BYTES)
        path.touch(mode=0o600)
        path.write_text(secret, encoding="utf-8")
    return secret


# --- commands ----------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.core.db import gateway_session_settings
    from gateway.http.serving import run_factory

    with database_location(settings) as location:
        # Refuse a superuser DSN here, in one line, before any worker starts.
        asyncio.run(gateway_session_settings(location.url, settings))
        # Workers build their app from the environment: the same server, the same login.
        os.environ["DATABASE_URL"] = location.url
        run_factory(
            "gateway.app:app_from_env",
            settings,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=args.workers,
        )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.http.serving import gateway_config

    port = args.port or settings.port
    if settings.database_url is None:
        print(f"Data folder: {settings.data_dir}")
    with database_location(settings) as location:
        seeded_today = asyncio.run(_prepare_demo(location, settings, args, port=port))
        if settings.today_override is None:
            settings = dataclasses.replace(settings, today_override=seeded_today)
        app = create_app(dataclasses.replace(settings, database_url=location.url))
        # As `serve`: header timeout, proxy headers only from trusted proxies.
        config = gateway_config(app, settings, host=settings.host, port=port)
        uvicorn.Server(config).run()
    return EXIT_OK


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
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
    with database_location(settings) as location:
        asyncio.run(_migrate(location.owner_url, settings))
    print(
        f"Schema, read-contract views, the login role {settings.gateway_role} "
        "and its grants are up to date."
    )
    return EXIT_OK


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


def cmd_accounts(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        rows = asyncio.run(_account_rows(url))
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_accounts(rows))
    return EXIT_OK


def cmd_export_schema(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.execution.schema import export_sdl

    sys.stdout.write(export_sdl())
    return EXIT_OK


def cmd_dev_token(args: argparse.Namespace, settings: Settings) -> int:
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


# --- helpers -------------------------------------------------------------------------


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The gateway's login DSN (see `database_location`)."""
    with database_location(settings) as location:
        yield location.url


@contextmanager
def database_location(settings: Settings) -> Iterator[DatabaseLocation]:
    """The gateway's and the owner's DSNs; the embedded server is started if needed (its
    login role made ready) and stopped if we started it."""
    from gateway.migrations.location import locate_database

    location = locate_database(settings)
    try:
        yield location
    finally:
        if location.server is not None and location.server.started_here:
            location.server.stop()


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


async def _prepare_demo(
    location: DatabaseLocation, settings: Settings, args: argparse.Namespace, *, port: int
) -> date:
    """Seed on first start (as the owner), print the accounts with tokens (as the
    gateway's login role); returns the data set's today."""
    owner_url, url = location.owner_url, location.url
    conn = await asyncpg.connect(owner_url)
    try:
        info = await _seed_info(conn)
    finally:
        await conn.close()
    if info is None:
        if settings.database_url is not None:
            raise CliError(
                "DATABASE_URL has no demo data; run `school-gateway seed` against it first "
                "(demo never writes to a database it did not create)",
                exit_code=EXIT_USAGE,
            )
        print(f"First start: generating demo data (scale {args.scale}, seed {args.seed})...")
        await _seed(owner_url, settings, scale=args.scale, seed=args.seed, today=date.today())
        conn = await asyncpg.connect(url)
        try:
            info = await _seed_info(conn)
        finally:
            await conn.close()
        if info is None:
            raise CliError("seeding finished but gateway.seed_info is empty")
    elif settings.database_url is None:
        # A data folder from an older version: bring its tables, views and grants up to
        # date (its login role was made ready when the server was located).
        await _migrate(owner_url, settings)
    rows = await _account_rows(url)
    tokens = await _issue_tokens(url, settings, [str(row["key"]) for row in rows])
    print(format_accounts(rows))
    print()
    minutes = settings.jwt_ttl_seconds // 60
    print(f"Dev tokens (header `Authorization: Bearer <token>`; valid {minutes} min,")
    print("each its own revocable session: POST /auth/logout with the header ends it):")
    for key, token in tokens.items():
        print(f"  {key}: {token}")
    print()
    print(f"Diary date (the data set's today): {info['today']}")
    base = settings.auth.public_url
    print(f"GraphiQL: {base}/graphql")
    print(f"Sign in in a browser: {base}/auth/login (school login and password, students")
    print("under 14.5), or «Вход для пользователей старше 14,5 лет» on that page: ESIA")
    if settings.auth.dev_idp:
        from fixtures.dev_idp import DEV_IDP_PASSWORD

        print("through the development identity provider: pick a person with a SNILS")
        print(f"above, password {DEV_IDP_PASSWORD!r}.")
    today: date = info["today"]
    return today


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


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(raw: str) -> int:
    value = _positive(raw)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {value}")
    return value


def _iso_date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {raw!r}") from None
