"""The diary's reference data, kept per process: subjects, teachers, bells, work types.

Every lesson of a diary names a subject, a teacher and a bell time; joining those per row
in every lesson read was more than half of what PostgreSQL spent on a week's lessons
(backend CPU for two children's 55 lessons: 0.35-0.38 ms through a view that joined the
names and bells, 0.12-0.14 ms through `diary_api.lesson_facts`, which names them by id). They
change rarely, and every change to them changes `diary_api.journal_version`
(docs/read-contract.md), so each process keeps one copy of them, tagged with the journal
version it was read at.

How it stays fresh without a statement of its own: the students statement, which every
diary request sends before any lesson is read (resolvers.diary.sql.get_students_by_ids),
passes the version this copy has and gets back the journal's current version, plus the
whole reference data when they differ (columns `journal_version`, `reference`): the
statements per request are the same whether or not the copy is current. Between that
statement and the lessons' (a moment), a change can make the copy stale: a renamed teacher
is then shown by the old name in that one response, as a response started a moment
earlier would; an id the copy does not have makes the loader that met it read the
missing names (`missing`, `add_names`: one statement, in that case only).

Marks and attendance name their subject and work type by id the same way
(`diary_api.mark_facts`, `attendance_facts`): a year of one student's marks cost 0.52-0.60
ms of backend CPU with the names joined, 0.32-0.34 ms without.

Size: one entry per subject, teacher, work type and (school, lesson number) of the region
(at scale 10: 24 subjects, 1,107 teachers, 12 work types, 210 bells, ~45 kB of JSON,
~0.5 MB in memory); replaced
whole, never grown by requests except by `add_names`, which adds only ids that exist.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import time
from typing import Any, NamedTuple

import orjson
import strawberry

from resolvers.common.types import Subject, Teacher, WorkType

Bell = tuple[time, time]


class Missing(NamedTuple):
    """Ids a copy of the reference data lacks, by kind."""

    subject_ids: list[int]
    teacher_ids: list[int]
    work_type_ids: list[int]

    def __bool__(self) -> bool:
        return bool(self.subject_ids or self.teacher_ids or self.work_type_ids)


@dataclass(slots=True)
class ReferenceData:
    """One copy of the reference data; `version` is the journal version it was read at
    (None: nothing read yet)."""

    version: int | None = None
    subjects: dict[int, Subject] = field(default_factory=dict)
    teachers: dict[int, Teacher] = field(default_factory=dict)
    bells: dict[tuple[int, int], Bell] = field(default_factory=dict)
    work_types: dict[int, WorkType] = field(default_factory=dict)


def _subject(subject_id: int, name: str) -> Subject:
    return Subject(id=strawberry.ID(str(subject_id)), name=name)


def _teacher(teacher_id: int, name: str) -> Teacher:
    return Teacher(id=strawberry.ID(str(teacher_id)), name=name)


def _work_type(work_type_id: int, name: str, short_name: str, weight: float) -> WorkType:
    return WorkType(
        id=strawberry.ID(str(work_type_id)), name=name, short_name=short_name, weight=weight
    )


def parse_reference(version: int, payload: str) -> ReferenceData:
    """The reference data from the students statement's `reference` column."""
    document = orjson.loads(payload)
    return ReferenceData(
        version=version,
        subjects={row[0]: _subject(row[0], row[1]) for row in document["subjects"] or ()},
        teachers={row[0]: _teacher(row[0], row[1]) for row in document["teachers"] or ()},
        bells={
            (row[0], row[1]): (time.fromisoformat(row[2]), time.fromisoformat(row[3]))
            for row in document["bells"] or ()
        },
        work_types={row[0]: _work_type(*row) for row in document["work_types"] or ()},
    )


class ReferenceCache:
    """The process's copy of the reference data (one per application, shared by its
    requests; replaced whole, so a request holding `current` sees one consistent copy)."""

    def __init__(self) -> None:
        self.current = ReferenceData()

    @property
    def version(self) -> int | None:
        """The journal version of the copy (the students statement's `$2`)."""
        return self.current.version

    def update(self, version: int, payload: str | None) -> None:
        """Take the data the students statement returned for another version than the
        copy's. (Two requests may both read it; either copy is the journal's at some
        moment, and the next request corrects an older one. Versions are not compared
        for order: a restored database may count from lower again.)"""
        if payload is None or version == self.current.version:
            return
        self.current = parse_reference(version, payload)

    def missing(
        self,
        subject_ids: Collection[int] = (),
        teacher_ids: Collection[int] = (),
        work_type_ids: Collection[int] = (),
    ) -> Missing:
        """The ids the copy lacks (read them with `resolvers.diary.sql.list_names_by_ids`,
        then `add_names`)."""
        copy = self.current
        return Missing(
            subject_ids=sorted({i for i in subject_ids if i not in copy.subjects}),
            teacher_ids=sorted({i for i in teacher_ids if i not in copy.teachers}),
            work_type_ids=sorted({i for i in work_type_ids if i not in copy.work_types}),
        )

    def add_names(self, rows: Iterable[Any]) -> ReferenceData:
        """The copy with these subjects (`kind` 's'), teachers ('t') and work types ('w')
        added (`list_names_by_ids`' rows); it becomes the current copy."""
        copy = self.current
        filled = ReferenceData(
            version=copy.version,
            subjects=dict(copy.subjects),
            teachers=dict(copy.teachers),
            bells=copy.bells,
            work_types=dict(copy.work_types),
        )
        for row in rows:
            kind, key, name = row["kind"], row["id"], row["name"]
            if kind == "s":
                filled.subjects[key] = _subject(key, name)
            elif kind == "t":
                filled.teachers[key] = _teacher(key, name)
            else:
                filled.work_types[key] = _work_type(key, *orjson.loads(name))
        self.current = filled
        return filled
