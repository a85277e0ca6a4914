"""`school-gateway serve` (GraphQL over HTTP as the gateway's login role, a superuser DSN
refused), `school-gateway export-schema` (the SDL on stdout) and `school-gateway
lint-schema` (gateway.execution.schema_lint)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from gateway.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    database_location,
    port_number,
    positive,
)
from gateway.core.settings import Settings

log = logging.getLogger(__name__)


def register_serve(commands: Commands) -> None:
    """Add `serve` to the `school-gateway` sub-commands."""
    serve = commands.add_parser("serve", help="serve GraphQL (DATABASE_URL or embedded)")
    serve.add_argument("--host", help="listen address (default SCHOOL_GATEWAY_HOST)")
    serve.add_argument("--port", type=port_number, help="listen port (default SCHOOL_GATEWAY_PORT)")
    serve.add_argument("--workers", type=positive, default=1, help="worker processes (default 1)")
    serve.set_defaults(handler=cmd_serve)


def register_export_schema(commands: Commands) -> None:
    """Add `export-schema` to the `school-gateway` sub-commands."""
    export = commands.add_parser("export-schema", help="print the GraphQL SDL")
    export.set_defaults(handler=cmd_export_schema)


def register_lint_schema(commands: Commands) -> None:
    """Add `lint-schema` to the `school-gateway` sub-commands."""
    lint = commands.add_parser(
        "lint-schema", help="check descriptions and naming of the schema (exit 1 on findings)"
    )
    lint.add_argument(
        "sdl", nargs="?", type=Path, help="an SDL file to check (default: the served schema)"
    )
    lint.set_defaults(handler=cmd_lint_schema)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.core.db import check_login, gateway_session_settings
    from gateway.core.direct_pool import check_direct_login
    from gateway.core.read_replica import check_replica
    from gateway.core.tracing import exporter_from_env
    from gateway.http.metrics import serve_metrics
    from gateway.http.serving import run_factory

    exporter_from_env(os.environ)  # a bad OTEL_* setting refused here, before any worker
    with database_location(settings) as location:
        # Refuse a superuser DSN here, in one line, before any worker starts.
        asyncio.run(gateway_session_settings(location.url, settings))
        if settings.database_replica_url is not None:  # the workers inherit it as it is
            warning = asyncio.run(check_replica(settings.database_replica_url, settings))
            if warning is not None:
                log.warning("%s", warning)
        asyncio.run(check_login(location.url, settings))  # a pooler's refusals, one line
        if settings.pooler.direct_url is not None:  # the change feed's LISTEN
            asyncio.run(check_direct_login(settings.pooler.direct_url, settings))
        # Workers build their app from the environment: the same server, the same login.
        os.environ["DATABASE_URL"] = location.url
        host, port = args.host or settings.host, args.port or settings.port
        with serve_metrics(settings.metrics, port=port, workers=args.workers):
            run_factory(
                "gateway.app:app_from_env", settings, host=host, port=port, workers=args.workers
            )
    return EXIT_OK


def cmd_export_schema(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.execution.schema import export_sdl

    sys.stdout.write(export_sdl())
    return EXIT_OK


def cmd_lint_schema(args: argparse.Namespace, settings: Settings) -> int:
    from graphql import GraphQLError, GraphQLSchema, build_schema

    from gateway.core.graphql_internals import core_schema
    from gateway.execution.schema import served_schema
    from gateway.execution.schema_lint import lint

    schema: GraphQLSchema
    if args.sdl is None:
        schema, source = core_schema(served_schema()), "the served schema"
    else:
        try:
            schema, source = build_schema(args.sdl.read_text(encoding="utf-8")), str(args.sdl)
        except (OSError, GraphQLError) as error:
            raise CliError(f"cannot read {args.sdl}: {error}", exit_code=EXIT_USAGE) from error
    findings = lint(schema)
    for finding in findings:
        print(finding)
    print(f"schema lint ({source}): {len(findings)} finding(s)")
    return EXIT_OK if not findings else EXIT_FAILURE
