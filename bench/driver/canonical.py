"""One canonical structure per operation, whatever target answered: sorted plain records.

The gateway and the raw limit answer in the gateway's shape; PostGraphile in the shape of
its generated schema. Each answer is reduced to the facts the operation shows (ids as
strings, numbers as floats, enums upper-case, names joined), so equal data compares equal.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.averages import MarkValue, reason, subject_results
from bench.driver.operations import Kind

Json = Any


class MismatchError(RuntimeError):
    """Two targets returned different data for an operation."""


def _num(value: Json) -> float | None:
    return None if value is None else float(value)


def _person(node: Json | None) -> str | None:
    if node is None:
        return None
    return " ".join(
        part for part in (node["lastName"], node["firstName"], node["patronymic"]) if part
    )


def _attachments(items: list[Json]) -> list[list[str]]:
    return [[item["title"], item["url"]] for item in items]


# --- parent-week ------------------------------------------------------------------


def _gateway_lesson(day: str, lesson: Json) -> Json:
    replacement = lesson["replacement"]
    return {
        "id": str(lesson["id"]),
        "date": day,
        "number": lesson["number"],
        "subject": lesson["subject"]["name"],
        "teacher": lesson["teacher"]["name"],
        "room": lesson["room"],
        "status": lesson["status"],
        "replacement": None
        if replacement is None
        else [replacement["subject"]["name"], replacement["teacher"]["name"]],
        "topic": lesson["topic"],
        "homework": sorted(
            [h["text"], h["dueOn"], _attachments(h["attachments"])] for h in lesson["homework"]
        ),
        "marks": sorted(
            [m["id"], m["value"], _num(m["weight"]), m["workType"]["name"]] for m in lesson["marks"]
        ),
        "attendance": None
        if lesson["attendance"] is None
        else [lesson["attendance"]["code"], lesson["attendance"]["minutesLate"]],
    }


def parent_week_gateway(data: Json) -> Json:
    children = []
    for child in data["myChildren"]:
        lessons = [
            _gateway_lesson(day["date"], lesson)
            for day in child["diary"]["days"]
            for lesson in day["lessons"]
        ]
        children.append(
            {
                "id": str(child["id"]),
                "fullName": child["fullName"],
                "school": child["school"]["name"],
                "class": child["schoolClass"]["name"],
                "lessons": sorted(lessons, key=lambda item: (item["date"], item["number"])),
            }
        )
    return sorted(children, key=lambda item: item["id"])


def _postgraphile_lesson(lesson: Json, marks: list[Json], attendance: Json | None) -> Json:
    subject = lesson["subject"]["name"]
    teacher = _person(lesson["teacher"])
    replacement = None
    if lesson["status"] == "replaced":
        replaced_subject = lesson["replacementSubject"]
        replacement = [
            replaced_subject["name"] if replaced_subject else subject,
            _person(lesson["replacementTeacher"]) or teacher,
        ]
    topic = lesson["lessonTopic"]
    return {
        "id": str(lesson["rowId"]),
        "date": lesson["date"],
        "number": lesson["number"],
        "subject": subject,
        "teacher": teacher,
        "room": lesson["room"],
        "status": lesson["status"].upper(),
        "replacement": replacement,
        "topic": None if topic is None else topic["topic"],
        "homework": sorted(
            [h["text"], h["dueOn"], _attachments(h["homeworkAttachments"]["nodes"])]
            for h in lesson["homeworks"]["nodes"]
        ),
        "marks": sorted(
            [str(m["rowId"]), m["value"], _num(m["weight"]), m["workType"]["name"]] for m in marks
        ),
        "attendance": None
        if attendance is None
        else [attendance["code"], attendance["minutesLate"]],
    }


def parent_week_postgraphile(data: Json) -> Json:
    children = []
    for student in data["students"]["nodes"]:
        marks: dict[str, list[Json]] = {}
        for mark in student["marks"]["nodes"]:
            marks.setdefault(str(mark["lessonId"]), []).append(mark)
        attendance = {str(item["lessonId"]): item for item in student["attendances"]["nodes"]}
        lessons = [
            _postgraphile_lesson(
                lesson, marks.get(str(lesson["rowId"]), []), attendance.get(str(lesson["rowId"]))
            )
            for lesson in student["class"]["lessons"]["nodes"]
        ]
        klass = student["class"]
        children.append(
            {
                "id": str(student["rowId"]),
                "fullName": _person(student),
                "school": student["school"]["name"],
                "class": f"{klass['grade']}{klass['letter']}",
                "lessons": sorted(lessons, key=lambda item: (item["date"], item["number"])),
            }
        )
    return sorted(children, key=lambda item: item["id"])


# --- student-quarter --------------------------------------------------------------


def _quarter(marks: list[list[Json]], averages: list[list[Json]]) -> Json:
    return {"marks": sorted(marks), "averages": sorted(averages)}


def student_quarter_gateway(data: Json) -> Json:
    marks, averages = [], []
    for average in data["student"]["averages"]:
        subject = average["subject"]["name"]
        averages.append(
            [subject, average["weightedAverage"], average["weightSum"], average["marksCounted"]]
        )
        for item in average["contributions"]:
            mark = item["mark"]
            marks.append(
                [
                    str(mark["id"]),
                    subject,
                    mark["value"],
                    mark["date"],
                    _num(mark["numericValue"]),
                    _num(item["weight"]),
                    mark["countsInAverage"],
                    mark["workType"]["name"],
                    item["counted"],
                    item["reason"],
                ]
            )
    return _quarter(marks, averages)


def student_quarter_postgraphile(data: Json) -> Json:
    """The marks as returned, and the averages the checker derives from them."""
    nodes = data["student"]["marks"]["nodes"]
    values = [
        MarkValue(
            subject_id=node["lesson"]["subject"]["name"],
            subject_name=node["lesson"]["subject"]["name"],
            numeric_value=None if node["numericValue"] is None else Decimal(node["numericValue"]),
            weight=Decimal(node["weight"]),
            counts_in_average=node["countsInAverage"],
        )
        for node in nodes
    ]
    marks = [
        [
            str(node["rowId"]),
            value.subject_name,
            node["value"],
            node["date"],
            _num(node["numericValue"]),
            _num(node["weight"]),
            node["countsInAverage"],
            node["workType"]["name"],
            reason(value) == "COUNTED",
            reason(value),
        ]
        for node, value in zip(nodes, values, strict=True)
    ]
    averages = [
        [result.subject_name, result.weighted_average, result.weight_sum, result.marks_counted]
        for result in subject_results(values)
    ]
    return _quarter(marks, averages)


# --- student-year -----------------------------------------------------------------


def _year_row(
    mark: Json, mark_id: str, subject: str, lesson_id: str, number: int, topic: str | None
) -> list[Json]:
    """One mark of student-year as a comparable row (the same for every target)."""
    return [
        mark_id,
        mark["value"],
        _num(mark["numericValue"]),
        _num(mark["weight"]),
        mark["date"],
        mark["workTitle"],
        mark["comment"],
        mark["countsInAverage"],
        mark["workType"]["name"],
        _num(mark["workType"]["weight"]),
        subject,
        lesson_id,
        number,
        topic,
    ]


def student_year_gateway(data: Json) -> Json:
    return sorted(
        _year_row(
            mark,
            str(mark["id"]),
            mark["subject"]["name"],
            str(mark["lesson"]["id"]),
            mark["lesson"]["number"],
            mark["lesson"]["topic"],
        )
        for mark in data["student"]["marks"]
    )


def student_year_postgraphile(data: Json) -> Json:
    rows = []
    for mark in data["student"]["marks"]["nodes"]:
        lesson = mark["lesson"]
        topic = lesson["lessonTopic"]
        rows.append(
            _year_row(
                mark,
                str(mark["rowId"]),
                lesson["subject"]["name"],
                str(lesson["rowId"]),
                lesson["number"],
                None if topic is None else topic["topic"],
            )
        )
    return sorted(rows)


Normaliser = Callable[[Json], Json]
_GATEWAY_SHAPE: dict[str, Normaliser] = {
    "parent-week": parent_week_gateway,
    "student-quarter": student_quarter_gateway,
    "student-year": student_year_gateway,
}
_POSTGRAPHILE_SHAPE: dict[str, Normaliser] = {
    "parent-week": parent_week_postgraphile,
    "student-quarter": student_quarter_postgraphile,
    "student-year": student_year_postgraphile,
}


def canonical(operation: str, kind: Kind, payload: Json) -> Json:
    """The canonical structure of a response; fails on GraphQL errors or missing data."""
    if not isinstance(payload, dict) or payload.get("errors") or payload.get("data") is None:
        raise MismatchError(f"{operation}: an error response: {json.dumps(payload)[:2000]}")
    shapes = _POSTGRAPHILE_SHAPE if kind is Kind.POSTGRAPHILE else _GATEWAY_SHAPE
    return shapes[operation](payload["data"])


def describe_difference(expected: Json, actual: Json, *, names: tuple[str, str]) -> str:
    """A unified diff of two canonical structures (at most 80 lines)."""

    def lines(value: Json) -> list[str]:
        return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True).splitlines()

    diff = difflib.unified_diff(
        lines(expected), lines(actual), fromfile=names[0], tofile=names[1], lineterm=""
    )
    return "\n".join(list(diff)[:80])


def size_summary(value: Json) -> str:
    """How big a canonical answer is, for the report (records and leaf values)."""
    leaves = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            leaves += 1
    return f"{leaves} leaf values"
