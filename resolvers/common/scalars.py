"""The schema's date and time scalars: strawberry's, with their formats documented.

Outputs are `isoformat()` of the Python value (the compiled completers rely on that);
inputs are held to the documented format, so a client's `20261127` or `2026-W48-5` is
refused instead of being read as a date it did not mean.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time
from operator import methodcaller
from typing import Final

import strawberry
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

DATE_SPEC: Final = "https://ibm.github.io/graphql-specs/custom-scalars/date.html"
DATE_TIME_SPEC: Final = "https://ibm.github.io/graphql-specs/custom-scalars/date-time.html"

_isoformat = methodcaller("isoformat")
_SHOWN_CHARS: Final = 40  # of a refused value, in the error's detail


def _strict_parser(
    kind: str, pattern: str, parse: Callable[[str], object], expected: str
) -> Callable[[object], object]:
    """An input parser taking only strings of `pattern` that `parse` accepts."""
    form = re.compile(pattern, re.ASCII)

    def parse_value(value: object) -> object:
        if isinstance(value, str) and form.fullmatch(value):
            try:
                return parse(value)
            except ValueError:
                pass
        shown = repr(value)
        if len(shown) > _SHOWN_CHARS:  # a huge value is not echoed back whole
            shown = shown[:_SHOWN_CHARS] + "…"
        raise StrawberryInputCoercionError(
            f"Value cannot represent a {kind}: {shown}. Expected {expected}."
        )

    return parse_value


# The scalars the schema's Python date, datetime and time values map to
# (gateway.execution.schema passes them to strawberry).
DATE_SCALARS: Final[dict[object, ScalarDefinition]] = {
    date: strawberry.scalar(
        name="Date",
        description=(
            "A calendar date without a time zone, as `YYYY-MM-DD` (RFC 3339 full-date, "
            "e.g. `2026-11-27`); school days are dates of the school's own calendar."
        ),
        specified_by_url=DATE_SPEC,
        serialize=_isoformat,
        parse_value=_strict_parser(
            "Date", r"\d{4}-\d{2}-\d{2}", date.fromisoformat, "a calendar date as YYYY-MM-DD"
        ),
    ),
    datetime: strawberry.scalar(
        name="DateTime",
        description=(
            "An instant, as an RFC 3339 date-time with its UTC offset "
            "(e.g. `2026-11-27T09:41:05.123456+00:00`; fractions of a second optional)."
        ),
        specified_by_url=DATE_TIME_SPEC,
        serialize=_isoformat,
        parse_value=DateTimeDefinition.parse_value,
    ),
    time: strawberry.scalar(
        name="Time",
        description=(
            "A local wall-clock time of the school's day without a time zone, as `HH:MM:SS` "
            "(e.g. `08:30:00`; the bell schedule's times)."
        ),
        serialize=_isoformat,
        parse_value=_strict_parser(
            "Time", r"\d{2}:\d{2}:\d{2}(\.\d{1,6})?", time.fromisoformat, "a local time as HH:MM:SS"
        ),
    ),
}
