"""The schema lint (`school-gateway lint-schema`, run by ./scripts/check): the served schema
has no finding, and a field, argument, input field or enum value added without a
description — or named against the conventions — is one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from graphql import build_schema, extend_schema, parse

from gateway.core.graphql_internals import core_schema
from gateway.core.settings import PROJECT_ROOT
from gateway.execution.schema import export_sdl, served_schema
from gateway.execution.schema_lint import lint
from tests.support.cli_process import COMMAND

UNDESCRIBED = """
extend type Query {
  "The school's motto."
  motto(lang: String): String
  nope: Int
}
enum Colour { "Red." RED green }
input Paint { "Its colour." colour: Colour shade: Int }
type badName { "lower-case start." snake_field: Int @deprecated(reason: " ") }
extend type Query { "Paint it." paint(with: Paint): badName }
"""


def test_the_served_schema_has_no_finding() -> None:
    findings = lint(core_schema(served_schema()))
    assert [str(finding) for finding in findings] == []


def test_every_undescribed_or_misnamed_member_is_found() -> None:
    served = build_schema(export_sdl())
    before = {str(finding) for finding in lint(served)}
    found = {str(finding) for finding in lint(extend_schema(served, parse(UNDESCRIBED)))}
    assert found - before == {
        "fields-have-descriptions: Query.nope",
        "arguments-have-descriptions: Query.motto(lang)",
        "arguments-have-descriptions: Query.paint(with)",
        "types-have-descriptions: Colour",
        "enum-values-have-descriptions: Colour.green",
        "enum-values-all-caps: Colour.green",
        "types-have-descriptions: Paint",
        "input-object-values-have-descriptions: Paint.shade",
        "types-have-descriptions: badName",
        "types-are-capitalized: badName",
        "descriptions-are-capitalized: badName.snake_field",
        "names-are-camel-cased: badName.snake_field",
        "deprecations-have-a-reason: badName.snake_field",
    }


def test_the_command_fails_on_a_finding_and_passes_the_committed_file(tmp_path: Path) -> None:
    committed = subprocess.run(
        [COMMAND, "lint-schema", "schema.graphql"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert committed.returncode == 0, committed.stdout + committed.stderr
    assert committed.stdout.endswith("schema lint (schema.graphql): 0 finding(s)\n")
    regressed = tmp_path / "regressed.graphql"
    regressed.write_text(export_sdl() + "extend type Query {\n  nope: Int\n}\n", encoding="utf-8")
    failed = subprocess.run(
        [COMMAND, "lint-schema", str(regressed)], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    assert failed.stdout.splitlines() == [
        "fields-have-descriptions: Query.nope",
        f"schema lint ({regressed}): 1 finding(s)",
    ]
