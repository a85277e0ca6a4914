"""resolvers.common.selection: the one walk over a resolver's selection set."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry

from gateway.execution.settling import SettlingExecutionContext
from resolvers.common.selection import selected_fields

_walked: list[list[tuple[str, str]]] = []


@strawberry.type
class Mark:
    value: str
    weight: float


@strawberry.type
class Lesson:
    topic: str
    marks: list[Mark]


@strawberry.type
class Diary:
    lessons: list[Lesson]
    marks: list[Mark]


def resolve_diary(info: strawberry.Info[Any, Any]) -> Diary:
    walked = [(parent, name) for parent, name, _ in selected_fields(info)]
    _walked.append(walked)
    _walked.append([("selects", str(("Lesson", "marks") in walked))])
    return Diary(lessons=[], marks=[])


@strawberry.type
class Query:
    diary: Diary = strawberry.field(resolver=resolve_diary)


def _walk(query: str, execution_context_class: Any) -> tuple[list[tuple[str, str]], bool]:
    _walked.clear()
    schema = strawberry.Schema(query=Query, execution_context_class=execution_context_class)
    result = schema.execute_sync(query)
    assert result.errors is None
    fields, (selected,) = _walked
    return fields, selected[1] == "True"


@pytest.fixture(params=[None, SettlingExecutionContext], ids=["strawberry", "settling"])
def context_class(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_fields_through_fragments_with_their_types(context_class: Any) -> None:
    query = """
        { diary { __typename marks { value } ...L ... on Diary { lessons { ...L2 } } }
          diary { ...L } }
        fragment L on Diary { lessons { topic ...L2 } }
        fragment L2 on Lesson { marks { weight } }
    """
    fields, lesson_marks = _walk(query, context_class)
    assert sorted(set(fields)) == [
        ("Diary", "lessons"),
        ("Diary", "marks"),
        ("Lesson", "marks"),
        ("Lesson", "topic"),
        ("Mark", "value"),
        ("Mark", "weight"),
    ]
    assert lesson_marks  # found through two fragments
    # Each named fragment is walked once, however often it is spread.
    assert fields.count(("Lesson", "topic")) == 1


def test_a_name_on_another_type_is_not_the_field(context_class: Any) -> None:
    fields, lesson_marks = _walk("{ diary { marks { value } lessons { topic } } }", context_class)
    assert ("Diary", "marks") in fields
    assert not lesson_marks  # Diary.marks is not Lesson.marks
