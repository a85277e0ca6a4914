"""The date and time scalars take only their documented formats (no Time or DateTime
argument exists yet, so Time is checked here through the served schema's scalar)."""

from __future__ import annotations

from datetime import date, time

import pytest
from graphql import GraphQLScalarType
from strawberry.exceptions import StrawberryInputCoercionError

from gateway.core.graphql_internals import core_schema
from gateway.execution.schema import served_schema


def _scalar(name: str) -> GraphQLScalarType:
    scalar = core_schema(served_schema()).type_map[name]
    assert isinstance(scalar, GraphQLScalarType)
    return scalar


def test_documented_formats_parse() -> None:
    assert _scalar("Date").parse_value("2026-11-27") == date(2026, 11, 27)
    assert _scalar("Time").parse_value("08:30:00") == time(8, 30)
    assert _scalar("Time").parse_value("08:30:00.5") == time(8, 30, 0, 500000)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Date", "20261127"),
        ("Date", "2026-W48-5"),
        ("Date", "2026-02-30"),
        ("Date", 20261127),
        ("Time", "08:30"),
        ("Time", "8:30:00"),
        ("Time", "0830"),
        ("Time", "25:00:00"),
    ],
)
def test_other_forms_are_refused(name: str, value: object) -> None:
    with pytest.raises(StrawberryInputCoercionError, match=f"Value cannot represent a {name}"):
        _scalar(name).parse_value(value)


def test_a_huge_refused_value_is_not_echoed_whole() -> None:
    with pytest.raises(StrawberryInputCoercionError) as refused:
        _scalar("Date").parse_value("2026-11-27" * 100_000)
    assert len(str(refused.value)) < 200
    assert "'2026-11-272026-11-27" in str(refused.value)
