"""`school-gateway` (also `python -m gateway`): the parser of every sub-command and the
dispatch that turns settings and failures into one stderr line and an exit code."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable, Sequence

import asyncpg

from gateway.cli import analytics, clients, dev, serve, sign_in_events, signing_keys
from gateway.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    PROG,
    CliError,
    Command,
    Commands,
    apply_listen_flags,
    load_settings,
)
from gateway.core.db_roles import UnsafeLoginError
from gateway.core.embedded import EmbeddedPostgresError
from gateway.core.logging import configure_logging
from gateway.core.pooler import PoolerSetupError
from gateway.core.settings import SettingsError

# In this order in `--help`.
_REGISTRARS: tuple[Callable[[Commands], None], ...] = (
    serve.register_serve,
    dev.register_demo,
    dev.register_seed,
    dev.register_migrate,
    dev.register_accounts,
    serve.register_export_schema,
    serve.register_lint_schema,
    dev.register_dev_token,
    sign_in_events.register,
    clients.register,
    signing_keys.register,
    analytics.register,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `school-gateway` command."""
    args = build_parser().parse_args(argv)
    apply_listen_flags(args)
    try:
        settings = load_settings(args.command)
    except SettingsError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    command: Command = args.handler
    try:
        return command(args, settings)
    except CliError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.exit_code
    except (UnsafeLoginError, SettingsError, PoolerSetupError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as error:
        print(f"{PROG}: database error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def installed_version() -> str:
    """The installed package's version (pyproject.toml), or "unknown" when not installed."""
    try:
        return importlib.metadata.version("school-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The `school-gateway` parser; each sub-command's `handler` is its function."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="GraphQL gateway over a regional school journal database."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(commands)
    return parser
