"""`schema.graphql` is the exported SDL: a test fails when code and file drift apart."""

from __future__ import annotations

import re

from graphql import build_schema as parse_sdl
from graphql import print_ast
from strawberry.extensions import MaskErrors, SchemaExtension

from gateway.core.settings import PROJECT_ROOT, Settings
from gateway.execution.schema import build_schema, export_sdl

SCHEMA_FILE = PROJECT_ROOT / "schema.graphql"
FAMILY_ONLY = "@authenticated @roles(anyOf: [PARENT, STUDENT])"


def test_schema_file_matches_the_code() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == export_sdl(), (
        "schema.graphql is out of date: run `school-gateway export-schema > schema.graphql`"
    )
    assert committed.endswith("}\n")


def test_extensions_do_not_change_the_sdl(settings: Settings) -> None:
    class Noop(SchemaExtension):
        pass

    schema = build_schema(settings, extensions=[Noop, MaskErrors])
    assert schema.as_str().rstrip("\n") + "\n" == export_sdl()


def test_permission_directives_are_published() -> None:
    sdl = export_sdl()
    assert "directive @authenticated on FIELD_DEFINITION" in sdl
    assert "directive @roles(anyOf: [Role!]!) on FIELD_DEFINITION" in sdl
    assert "directive @studentScope on FIELD_DEFINITION" in sdl
    assert re.search(r"^  viewer: Viewer @authenticated$", sdl, re.MULTILINE)
    assert re.search(rf"^  myChildren: \[Student!\]! {re.escape(FAMILY_ONLY)}$", sdl, re.MULTILINE)
    student = parse_sdl(sdl).query_type.fields["student"]  # type: ignore[union-attr]
    assert {name: str(arg.type) for name, arg in student.args.items()} == {"id": "ID!"}
    assert str(student.type) == "Student"
    assert student.ast_node is not None
    directives = " ".join(print_ast(directive) for directive in student.ast_node.directives)
    assert directives == f"{FAMILY_ONLY} @studentScope"


def test_every_student_field_that_reads_the_journal_is_scoped() -> None:
    body = export_sdl().split("type Student {", 1)[1].split("\n}\n", 1)[0]
    # Collapse multi-line argument lists so that each field is one line.
    flat = re.sub(r"\(\n.*?\n  \)", "(...)", body, flags=re.DOTALL)
    fields = dict(re.findall(r"^  (\w+)(?:\([^)]*\))?: (.*)$", flat, re.MULTILINE))
    scoped = {name for name, rest in fields.items() if rest.endswith("@studentScope")}
    assert scoped == {"diary", "periods", "finalMarks", "averages", "marks", "lastUpdatedAt"}


def test_sdl_is_valid_graphql() -> None:
    schema = parse_sdl(export_sdl())
    query = schema.query_type
    assert query is not None
    assert set(query.fields) == {
        "viewer",
        "myChildren",
        "student",
        "diaryChanges",
        "schoolDashboard",
        "regionalAnalytics",
    }
    subscription = schema.subscription_type
    assert subscription is not None and set(subscription.fields) == {"diaryEvents"}
