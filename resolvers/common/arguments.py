"""Validation of date windows and list bounds given as field arguments."""

from __future__ import annotations

from datetime import date, timedelta

from gateway.core.errors import (
    DateOutOfRangeError,
    DateRangeReversedError,
    DateRangeTooLongError,
    LimitOutOfRangeError,
)

# The journal has no data outside these dates; anything beyond is a client mistake.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2100, 12, 31)
# Averages and mark lists may span a whole school year, not more.
MAX_YEAR_DAYS = 366
MAX_PAGE_SIZE = 500


def check_date(value: date, *, argument: str) -> date:
    """The date itself, or DATE_OUT_OF_RANGE outside the supported window."""
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise DateOutOfRangeError(
            f"Дата в аргументе {argument} вне допустимого диапазона "
            f"({EARLIEST_DATE.isoformat()} — {LATEST_DATE.isoformat()}).",
            argument=argument,
        )
    return value


def check_window(date_from: date, date_to: date, *, max_days: int) -> tuple[date, date]:
    """An inclusive window checked for order and length (at most `max_days` days)."""
    check_date(date_from, argument="from")
    check_date(date_to, argument="to")
    if date_from > date_to:
        raise DateRangeReversedError("Дата начала периода (from) позже даты окончания (to).")
    days = (date_to - date_from).days + 1
    if days > max_days:
        raise DateRangeTooLongError(
            f"Слишком длинный период: {days} дн. Можно запросить не более {max_days} дн.",
            maxDays=max_days,
        )
    return date_from, date_to


def check_open_window(date_from: date | None, date_to: date | None) -> None:
    """Check the bounds of a window either end of which may be open (no length limit)."""
    if date_from is not None:
        check_date(date_from, argument="from")
    if date_to is not None:
        check_date(date_to, argument="to")
    if date_from is not None and date_to is not None and date_from > date_to:
        raise DateRangeReversedError("Дата начала периода (from) позже даты окончания (to).")


def week_of(day: date) -> tuple[date, date]:
    """Monday and Sunday of the week containing `day`."""
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


def diary_window(
    date_from: date | None, date_to: date | None, *, today: date, max_days: int
) -> tuple[date, date]:
    """The diary's window: the current week by default; one bound gives a 7-day window."""
    if date_from is None and date_to is None:
        return week_of(today)
    if date_to is None:
        assert date_from is not None
        check_date(date_from, argument="from")
        date_to = min(date_from + timedelta(days=min(max_days, 7) - 1), LATEST_DATE)
    elif date_from is None:
        check_date(date_to, argument="to")
        date_from = max(date_to - timedelta(days=min(max_days, 7) - 1), EARLIEST_DATE)
    return check_window(date_from, date_to, max_days=max_days)


def check_page_size(first: int) -> int:
    """`first` itself, or LIMIT_OUT_OF_RANGE outside 1..MAX_PAGE_SIZE."""
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise LimitOutOfRangeError(
            f"Аргумент first должен быть от 1 до {MAX_PAGE_SIZE}, получено {first}.",
            maxValue=MAX_PAGE_SIZE,
        )
    return first
