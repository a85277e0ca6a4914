"""What the `school-gateway` command modules share: exit codes and CliError, settings from
the environment, the database a command uses, and argument types. Imports no other CLI module.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar

from gateway.core.settings import Settings

if TYPE_CHECKING:
    from asyncpg import Connection

    from gateway.migrations.location import DatabaseLocation

T = TypeVar("T")
PROG: Final = "school-gateway"
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
DEV_SECRET_FILE: Final = "dev-jwt-secret"
ENV_PREFIX: Final = "SCHOOL_GATEWAY_"
SECRET_VARIABLE: Final = "SCHOOL_GATEWAY_JWT_SECRET"
SIGNING_COMMANDS: Final = frozenset({"serve", "demo", "dev-token"})
MAX_SCHOOL_ID: Final = 2_147_483_647  # PostgreSQL integer
_MIN_SECRET_BYTES: Final = 32

Command: TypeAlias = Callable[[argparse.Namespace, Settings], int]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A failure the user can act on: printed as one line, no traceback."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- settings --------------------------------------------------------------------------


def apply_listen_flags(args: argparse.Namespace) -> None:
    """`--host`/`--port` count as SCHOOL_GATEWAY_HOST/PORT before the settings are read,
    so everything derived from them (the public URL, the ESIA redirect URI, the dev
    identity provider's address, the allowed Origin) follows, in workers too."""
    for flag, variable in (("host", "SCHOOL_GATEWAY_HOST"), ("port", "SCHOOL_GATEWAY_PORT")):
        value = getattr(args, flag, None)
        if value:
            os.environ[variable] = str(value)


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


# --- the database ----------------------------------------------------------------------


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The gateway's login DSN (see `database_location`)."""
    with database_location(settings) as location:
        yield location.url


@contextmanager
def database_location(settings: Settings) -> Iterator[DatabaseLocation]:
    """The gateway's and the owner's DSNs; the embedded server is started if needed (its
    login role made ready) and stopped if we started it.

    With DATABASE_URL the commands use that server and touch nothing else; without it they
    use the embedded PostgreSQL in the data folder. The gateway's login is DATABASE_URL or
    the embedded server's login role; the owner's is DATABASE_OWNER_URL, or DATABASE_URL,
    or the embedded server's superuser (docs/read-contract.md).
    """
    from gateway.migrations.location import locate_database

    location = locate_database(settings)
    try:
        yield location
    finally:
        if location.server is not None and location.server.started_here:
            location.server.stop()


# --- argument types --------------------------------------------------------------------


def whole_number(raw: str) -> int:
    """An integer argument, or argparse's one-line error."""
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None


def positive(raw: str) -> int:
    """A whole number of at least 1 (scale, workers)."""
    value = whole_number(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(raw: str) -> int:
    """A TCP port, 1 to 65535."""
    value = positive(raw)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {value}")
    return value


def school_id_argument(raw: str) -> int:
    """A `--school ID` value: a positive PostgreSQL integer."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a school id, got {raw!r}") from None
    if not 1 <= value <= MAX_SCHOOL_ID:
        raise argparse.ArgumentTypeError(f"expected a school id, got {raw!r}")
    return value


def run_as_gateway(settings: Settings, work: Callable[[Connection], Awaitable[T]]) -> T:
    """`work` on one connection as the gateway's role (`database`), closed afterwards."""
    import asyncio

    from gateway.core.db import connect_as_gateway

    async def main(url: str) -> T:
        conn = await connect_as_gateway(url, settings)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with database(settings) as url:
        return asyncio.run(main(url))
