"""Plain GraphQL object types of the diary: every field is an attribute, no resolvers.

Loaders build these from rows (see `resolvers.records`); nested data a client shows with
an item (a mark's subject, work type and lesson) is already joined in SQL.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time

import strawberry


@strawberry.enum(description="Статус урока в расписании.")
class LessonStatus(enum.Enum):
    HELD = "held"
    CANCELLED = "cancelled"
    REPLACED = "replaced"


@strawberry.enum(description="Схема учебных периодов: четверти, полугодия или триместры.")
class PeriodScheme(enum.Enum):
    QUARTERS = "quarters"
    HALF_YEARS = "half_years"
    TRIMESTERS = "trimesters"


@strawberry.enum(description="Вид итоговой отметки.")
class FinalMarkKind(enum.Enum):
    PERIOD = "period"
    YEAR = "year"
    EXAM = "exam"


@strawberry.enum(description="Вид отметки о посещаемости; исходный код журнала — в поле `code`.")
class AttendanceKind(enum.Enum):
    ABSENT = "absent"
    ILL = "ill"
    EXCUSED = "excused"
    LATE = "late"


@strawberry.type(description="Школа.")
class School:
    id: strawberry.ID
    name: str
    short_name: str
    municipality: str


@strawberry.type(description="Класс ученика в текущем учебном году, например «5Б».")
class SchoolClass:
    id: strawberry.ID
    name: str
    grade: int
    letter: str


@strawberry.type(description="Учебный предмет.")
class Subject:
    id: strawberry.ID
    name: str


@strawberry.type(description="Учитель.")
class Teacher:
    id: strawberry.ID
    name: str = strawberry.field(description="Фамилия, имя и отчество.")


@strawberry.type(description="Вид работы и его вес по умолчанию.")
class WorkType:
    id: strawberry.ID
    name: str
    short_name: str
    weight: float = strawberry.field(description="Вес по умолчанию; у отметки может быть свой.")


@strawberry.type(description="Урок, к которому относится запись: дата, номер, тема.")
class LessonSummary:
    id: strawberry.ID
    date: date
    number: int
    topic: str | None


@strawberry.type(description="Текущая отметка и то, за что она поставлена.")
class Mark:
    id: strawberry.ID
    value: str = strawberry.field(description="Отметка как в журнале: «5», «4-», «зачёт», «осв».")
    numeric_value: float | None = strawberry.field(
        description="Числовое значение; null у отметок без числа (зачёт, осв)."
    )
    work_type: WorkType
    weight: float = strawberry.field(description="Вес этой отметки в средневзвешенном.")
    work_title: str | None = strawberry.field(description="За что отметка: название работы.")
    comment: str | None
    date: date
    counts_in_average: bool = strawberry.field(
        description="Учитель учитывает отметку в среднем балле."
    )
    subject: Subject
    lesson: LessonSummary
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="Вложение к домашнему заданию: ссылка.")
class Attachment:
    title: str
    url: str


@strawberry.type(description="Домашнее задание.")
class Homework:
    id: strawberry.ID
    text: str
    assigned_on: date = strawberry.field(description="Когда задано (дата урока).")
    due_on: date = strawberry.field(description="К какому дню задано.")
    subject: Subject
    attachments: list[Attachment]
    lesson_id: strawberry.ID = strawberry.field(description="Урок, на котором задано.")
    updated_at: datetime


@strawberry.type(description="Отметка о посещаемости ученика на уроке.")
class Attendance:
    id: strawberry.ID
    date: date
    lesson_id: strawberry.ID
    lesson_number: int
    subject: Subject
    code: str = strawberry.field(description="Код как в журнале: Н, Б, У, П, О, ОП.")
    kind: AttendanceKind
    minutes_late: int | None = strawberry.field(description="Опоздание в минутах (для О и ОП).")
    comment: str | None
    updated_at: datetime


@strawberry.type(description="Замена урока: что и кто фактически ведёт урок.")
class LessonReplacement:
    subject: Subject = strawberry.field(
        description="Предмет, который ведётся вместо запланированного (или тот же)."
    )
    teacher: Teacher = strawberry.field(
        description="Учитель, который ведёт урок (заменяющий или тот же)."
    )


@strawberry.type(description="Урок в расписании с темой, заданиями, отметками и посещаемостью.")
class Lesson:
    id: strawberry.ID
    date: date
    number: int = strawberry.field(description="Номер урока по звонкам.")
    starts_at: time | None
    ends_at: time | None
    subject: Subject
    teacher: Teacher
    room: str | None
    status: LessonStatus
    status_comment: str | None
    replacement: LessonReplacement | None = strawberry.field(
        description="Только у заменённых уроков."
    )
    topic: str | None
    homework: list[Homework] = strawberry.field(description="Задания, выданные на этом уроке.")
    marks: list[Mark] = strawberry.field(description="Отметки ученика за этот урок.")
    attendance: Attendance | None = strawberry.field(
        description="Отметка о посещаемости ученика на этом уроке (null — присутствовал)."
    )
    updated_at: datetime


@strawberry.type(description="День дневника.")
class DiaryDay:
    date: date
    lessons: list[Lesson]
    homework_due: list[Homework] = strawberry.field(description="Задания, заданные к этому дню.")


@strawberry.type(description="Дневник ученика за период дат (включительно).")
class Diary:
    from_: date = strawberry.field(name="from")
    to: date
    days: list[DiaryDay] = strawberry.field(description="Каждый календарный день периода.")
    lessons: list[Lesson]
    homework: list[Homework] = strawberry.field(description="Задания со сроком в этом периоде.")
    marks: list[Mark]
    attendance: list[Attendance]
    last_updated_at: datetime | None = strawberry.field(
        description="Когда в последний раз менялось что-либо из показанного в этом периоде."
    )


@strawberry.type(description="Учебный период (четверть, полугодие, триместр).")
class Period:
    id: strawberry.ID
    number: int
    title: str
    scheme: PeriodScheme
    starts_on: date
    ends_on: date
    year_title: str = strawberry.field(description="Учебный год, например «2026/2027».")
    is_current: bool = strawberry.field(description="Сегодняшний день входит в период.")


@strawberry.type(description="Ссылка на учебный период.")
class PeriodRef:
    id: strawberry.ID
    title: str


@strawberry.type(description="Итоговая отметка: за период, за год или экзаменационная.")
class FinalMark:
    id: strawberry.ID
    kind: FinalMarkKind
    subject: Subject
    period: PeriodRef | None = strawberry.field(description="Только у отметок за период.")
    year_title: str
    value: str
    numeric_value: float | None
    updated_at: datetime


@strawberry.enum(description="Почему отметка учтена или не учтена в среднем.")
class ContributionReason(enum.Enum):
    COUNTED = "counted"
    NOT_COUNTED_BY_TEACHER = "not_counted_by_teacher"
    NO_NUMERIC_VALUE = "no_numeric_value"
    ZERO_WEIGHT = "zero_weight"


@strawberry.type(description="Вклад одной отметки в средневзвешенный балл.")
class AverageContribution:
    mark: Mark
    counted: bool
    weight: float
    numeric_value: float | None
    reason: ContributionReason


@strawberry.type(description="Средневзвешенный балл по предмету: Σ(вес·отметка) / Σ(вес).")
class SubjectAverage:
    subject: Subject
    weighted_average: float | None = strawberry.field(
        description="Округлено до сотых; null, если нет учитываемых отметок."
    )
    weight_sum: float
    marks_counted: int
    contributions: list[AverageContribution] = strawberry.field(
        description="Каждая отметка по предмету в окне: учтена ли, с каким весом и почему."
    )
