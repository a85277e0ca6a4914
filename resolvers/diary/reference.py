"""The diary's reference data, kept per process: subjects, teachers, bells, work types.

Every lesson of a diary names a subject, a teacher and a bell time; joining those per row
in every lesson read was more than half of what PostgreSQL spent on a week's lessons
(backend CPU for two children's 55 lessons: 0.35-0.38 ms through a view that joined the
names and bells, 0.12-0.14 ms through `diary_api.lesson_facts`, which names them by id). They
change rarely, and every change to them changes `diary_api.reference_version`
(docs/read-contract.md), so each process keeps one copy of them, tagged with the version
it was read at.

How it stays fresh without a statement of its own: the students statement, which every
diary request sends before any lesson is read (resolvers.diary.sql.get_students_by_ids),
passes the version this copy has and gets back the database's current one, plus the
whole reference data when they differ (columns `reference_version`, `reference`): the
statements per request are the same whether or not the copy is current. Between that
statement and the lessons' (a moment), a change can make the copy stale: a renamed teacher
is then shown by the old name in that one response, as a response started a moment
earlier would; an id the copy does not have makes the loader that met it read the
missing names (`missing`, `add_names`: one statement, in that case only).

Marks and attendance name their subject and work type by id the same way
(`diary_api.mark_facts`, `attendance_facts`): a year of one student's marks cost 0.52-0.60
ms of backend CPU with the names joined, 0.32-0.34 ms without.

Each request names its rows from one copy (`RequestReference`): the one whose version its
students statement sent when nothing came back, else the one that came back. Requests
racing over the shared copy therefore never name rows from an older copy than their own
statement saw, and a response is never cached under a newer change token than its names.

An id that does not exist at all (a dangling reference the stand-in's foreign keys rule
out) is remembered as absent in the copy, so it is read by id once per version,
not once per request; the row naming it as subject, teacher or work type is left out
(as an inner join of the names would), a replacement naming it shows none. An entry of
the reference data that cannot be used (a NULL, a bell at 24:00) is skipped and counted
in a warning (no contents logged): the lessons it concerns show no bell or are left out.

Size: one entry per subject, teacher, work type and (school, lesson number) of the region
(at scale 10: 24 subjects, 1,107 teachers, 12 work types, 210 bells, ~45 kB of JSON,
~0.5 MB in memory); replaced whole, never grown by requests except by the names of ids
read by id (`RequestReference.add_names`), which exist or are remembered as absent. The
data comes back whenever `reference_version` changes: only with writes to those four
tables, not with the registry's (parents, links, staff), which change `journal_version`
(once per process and change, plus requests already in flight).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any, NamedTuple, TypeVar

import orjson
import strawberry

from resolvers.common.types import Subject, Teacher, WorkType

log = logging.getLogger(__name__)

# Reads the names of the ids a copy lacks (resolvers.diary.sql.list_names_by_ids' rows).
NamesReader = Callable[["Missing"], Awaitable[Iterable[Any]]]

Bell = tuple[time, time]


# The reference data as one JSON object (what `parse_reference` reads), which the
# students statement (resolvers.diary.sql) and the change feed's pages add when the
# caller's copy is not of the database's version.
REFERENCE_JSON = """json_build_object(
    'subjects', (SELECT json_agg(json_build_array(s.id, s.name)) FROM diary_api.subjects s),
    'teachers', (SELECT json_agg(json_build_array(t.id, t.name)) FROM diary_api.teachers t),
    'bells', (SELECT json_agg(json_build_array(b.school_id, b.lesson_number,
                                               b.starts_at, b.ends_at))
              FROM diary_api.bells b),
    'work_types', (SELECT json_agg(json_build_array(w.id, w.name, w.short_name, w.weight))
                   FROM diary_api.work_types w))::text"""


class Missing(NamedTuple):
    """Ids a copy of the reference data lacks, by kind."""

    subject_ids: list[int]
    teacher_ids: list[int]
    work_type_ids: list[int]

    def __bool__(self) -> bool:
        return bool(self.subject_ids or self.teacher_ids or self.work_type_ids)


@dataclass(slots=True)
class ReferenceData:
    """One copy of the reference data; `version` is the reference version it was read at
    (None: nothing read yet); `absent`: (kind, id) looked up by id and not found."""

    version: int | None = None
    subjects: dict[int, Subject] = field(default_factory=dict)
    teachers: dict[int, Teacher] = field(default_factory=dict)
    bells: dict[tuple[int, int], Bell] = field(default_factory=dict)
    work_types: dict[int, WorkType] = field(default_factory=dict)
    absent: frozenset[tuple[str, int]] = frozenset()


def _subject(subject_id: int, name: str) -> Subject:
    return Subject(id=strawberry.ID(str(subject_id)), name=name)


def _teacher(teacher_id: int, name: str) -> Teacher:
    return Teacher(id=strawberry.ID(str(teacher_id)), name=name)


def _work_type(work_type_id: int, name: str, short_name: str, weight: float) -> WorkType:
    return WorkType(
        id=strawberry.ID(str(work_type_id)),
        name=name,
        short_name=short_name,
        weight=float(weight),  # JSON gives 1 for a whole number in an integer column
    )


def _bell(starts_at: str, ends_at: str) -> Bell:
    return time.fromisoformat(starts_at), time.fromisoformat(ends_at)


T = TypeVar("T")


def _entries(rows: Iterable[Any] | None, build: Callable[..., T], skipped: list[int]) -> list[T]:
    """`build(*row)` of each row; a row that does not fit (a NULL, a malformed time) is
    counted in `skipped` instead."""
    built: list[T] = []
    for row in rows or ():
        if None in row:
            skipped[0] += 1
            continue
        try:
            built.append(build(*row))
        except (TypeError, ValueError):
            skipped[0] += 1
    return built


def _keyed(rows: Iterable[Any] | None, build: Callable[..., T], skipped: list[int]) -> dict[int, T]:
    return dict(_entries(rows, lambda key, *rest: (int(key), build(int(key), *rest)), skipped))


def parse_reference(version: int, payload: str) -> ReferenceData:
    """The reference data from the students statement's `reference` column."""
    document = orjson.loads(payload)
    skipped = [0]
    data = ReferenceData(
        version=version,
        subjects=_keyed(document.get("subjects"), _subject, skipped),
        teachers=_keyed(document.get("teachers"), _teacher, skipped),
        bells=dict(
            _entries(
                document.get("bells"),
                lambda school, number, *times: ((int(school), int(number)), _bell(*times)),
                skipped,
            )
        ),
        work_types=_keyed(document.get("work_types"), _work_type, skipped),
    )
    if skipped[0]:
        log.warning("reference data: %d entries skipped (NULL or malformed values)", skipped[0])
    return data


class ReferenceCache:
    """The process's copy of the reference data (one per application, shared by its
    requests; replaced whole, never changed in place)."""

    def __init__(self) -> None:
        self.current = ReferenceData()

    def received(self, sent: ReferenceData, version: int, payload: str | None) -> ReferenceData:
        """The copy a request uses after its students statement, which sent `sent`'s
        version and read the database's `version`: `sent` when no data came back (the
        versions were equal), else the data that came back, which also becomes the
        process's copy. (Versions are not compared for order: a restored database may
        count from lower again.)"""
        if payload is None:
            return sent
        current = self.current
        if current.version == version:
            return current
        parsed = parse_reference(version, payload)
        self.current = parsed
        return parsed

    def filled(self, base: ReferenceData, rows: Iterable[Any], asked: Missing) -> ReferenceData:
        """`base` with the names `list_names_by_ids` read for `asked` (ids not found are
        remembered as absent); it becomes the process's copy unless another replaced
        `base` meanwhile."""
        filled = ReferenceData(
            version=base.version,
            subjects=dict(base.subjects),
            teachers=dict(base.teachers),
            bells=base.bells,
            work_types=dict(base.work_types),
        )
        for row in rows:
            kind, key, name = row["kind"], row["id"], row["name"]
            if kind == "s":
                filled.subjects[key] = _subject(key, name)
            elif kind == "t":
                filled.teachers[key] = _teacher(key, name)
            else:
                filled.work_types[key] = _work_type(key, *orjson.loads(name))
        filled.absent = base.absent | {
            *(("s", i) for i in asked.subject_ids if i not in filled.subjects),
            *(("t", i) for i in asked.teacher_ids if i not in filled.teachers),
            *(("w", i) for i in asked.work_type_ids if i not in filled.work_types),
        }
        if self.current is base:
            self.current = filled
        return filled


class RequestReference:
    """The reference data one request names its rows with (shared by its loaders)."""

    def __init__(self, cache: ReferenceCache) -> None:
        self.cache = cache
        self._copy: ReferenceData | None = None

    @property
    def data(self) -> ReferenceData:
        """The request's copy: the one its students statement settled on, else (no
        students statement yet) the process's."""
        return self._copy if self._copy is not None else self.cache.current

    def received(self, sent: ReferenceData, version: int, payload: str | None) -> None:
        """After a students statement that sent `sent.version` (see ReferenceCache)."""
        self._copy = self.cache.received(sent, version, payload)

    def missing(
        self,
        subject_ids: Collection[int] = (),
        teacher_ids: Collection[int] = (),
        work_type_ids: Collection[int] = (),
    ) -> Missing:
        """The ids the request's copy lacks and has not looked up before (read them with
        `resolvers.diary.sql.list_names_by_ids`, then `add_names`)."""
        copy = self.data
        absent = copy.absent
        return Missing(
            subject_ids=sorted(
                {i for i in subject_ids if i not in copy.subjects and ("s", i) not in absent}
            ),
            teacher_ids=sorted(
                {i for i in teacher_ids if i not in copy.teachers and ("t", i) not in absent}
            ),
            work_type_ids=sorted(
                {i for i in work_type_ids if i not in copy.work_types and ("w", i) not in absent}
            ),
        )

    def add_names(self, rows: Iterable[Any], asked: Missing) -> ReferenceData:
        """The request's copy with the names read for `asked` (`list_names_by_ids` rows)."""
        self._copy = self.cache.filled(self.data, rows, asked)
        return self._copy

    async def naming(
        self,
        rows: Sequence[Any],
        read_names: NamesReader,
        *,
        subjects: Sequence[str] = (),
        teachers: Sequence[str] = (),
        work_types: Sequence[str] = (),
    ) -> ReferenceData:
        """The request's copy with every id these columns of the rows name that exists:
        the ids it lacks (added after it was read, or naming nothing: then remembered as
        absent) are read with `read_names`, one call, only when some are missing."""
        missing = self.missing(
            ids_in(rows, subjects), ids_in(rows, teachers), ids_in(rows, work_types)
        )
        if not missing:
            return self.data
        return self.add_names(await read_names(missing), missing)


def ids_in(rows: Sequence[Any], columns: Sequence[str]) -> set[int]:
    """The distinct non-null values of these columns of the rows."""
    return {row[column] for row in rows for column in columns if row[column] is not None}
