"""Logging setup and the one line logged per request.

The request line holds the method, the path (without the query string: a GET request
carries variables there), the status, the duration and the operation name. Never
variables, tokens, SNILS, phones or birth dates. The path and the operation name come
from the client, so any run of six or more digits in them (a SNILS, a phone number, a
date written as digits), whatever separates the digits — spaces, dashes, dots, slashes,
brackets, underscores (the one separator a GraphQL name can carry:
`snils_112_233_445_95`) or any other punctuation a path can carry — is replaced by
`***` before logging (`safe_text`).

As a net under every other log line, the handler installed by `configure_logging`
formats through `RedactingFormatter`, which masks what looks like a SNILS, a Russian
phone number, a date or a long digit run in messages and tracebacks (`redact`) — the
timestamp prefix is left alone.

`SCHOOL_GATEWAY_LOG_FORMAT=json` writes one JSON object per line instead (`JsonFormatter`:
time, level, logger, message, the request id, and for the request line its method,
path, status, duration and operation), redacted the same way. Every request has an id:
the client's `X-Request-Id` when it is a plain token, else a new one; it is sent back
in `X-Request-Id` and carried by every line logged while the request runs
(`REQUEST_ID`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

ACCESS_LOGGER = "gateway.access"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,99}$")
# Six or more digits, possibly split by anything but letters and "+" (123-456-789 64,
# 112_233_445_95, (912) 555-01-01, 27.11.2012): what a SNILS, phone or date looks like.
_DIGIT_RUN_RE = re.compile(r"\d(?:(?:[^\w+]|_)*\d){5,}")
PATH_MAX_CHARS = 200
# What personal data looks like inside any message: SNILS (123-456-789 64,
# 123 456 789 64, 112_233_445_95, 12345678964), a Russian phone (+7 912 555-01-01,
# 8(912)5550101, 8_912_555_01_01), a date (2012-03-04, 04.03.2012, 2012_03_04), and any
# run of ten or more digits that is not part of a hexadecimal word.
_PERSONAL_RE = re.compile(
    r"\d{3}[\s_-]\d{3}[\s_-]\d{3}[\s_-]\d{2}"
    r"|(?:\+7|(?<![0-9A-Za-z])8)[\s_\-(]*\d{3}[\s_\-)]*\d{3}[\s_-]*\d{2}[\s_-]*\d{2}"
    r"|(?<![0-9A-Za-z])(?:\d{4}[-_]\d{2}[-_]\d{2}|\d{2}[._]\d{2}[._]\d{4})(?![0-9A-Za-z])"
    # Long digit runs, except inside hexadecimal words (a UUID's last group).
    r"|(?<![0-9A-Fa-f-])\d{10,}|\d{10,}(?![0-9A-Fa-f])"
)
# Digit groups joined by underscores (how a SNILS or phone fits in a GraphQL name or an
# identifier): masked when they hold six digits or more in all.
_UNDERSCORED_DIGITS_RE = re.compile(r"\d+(?:_+\d+)+")
_UNDERSCORED_MIN_DIGITS = 6

access_log = logging.getLogger(ACCESS_LOGGER)

# The id of the request being served (set by the request middleware), for every log line.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_NO_DIGITS: Final = str.maketrans("0123456789", "ghijklmnop")
# The request line's fields in a JSON line (`log_request`'s `extra`).
_ACCESS_FIELDS: Final = ("method", "path", "status", "duration_ms", "operation")


def request_id_from(header: str | None) -> str:
    """The client's `X-Request-Id` when it is a plain token (letters, digits, `.`, `_`,
    `:`, `-`; at most 128), else a new one: 32 letters (a random UUID's hex digits with
    0-9 written g-p, so that no run of digits in it is masked as personal data)."""
    if header is not None and _REQUEST_ID_RE.match(header):
        return header
    return uuid.uuid4().hex.translate(_NO_DIGITS)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level` as text lines or JSON objects (`log_format`); uvicorn's
    loggers go through ours, its access log is off."""
    root = logging.getLogger()
    formatter = JsonFormatter() if log_format == "json" else RedactingFormatter(_FORMAT)
    ours: list[logging.Handler] = [h for h in root.handlers if getattr(h, "_school_gateway", False)]
    if not ours:
        stream = logging.StreamHandler(sys.stderr)
        stream._school_gateway = True  # type: ignore[attr-defined]
        root.addHandler(stream)
        ours = [stream]
    for handler in ours:
        handler.setFormatter(formatter)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # uvicorn's access line would include the query string (GET variables).
    logging.getLogger("uvicorn.access").disabled = True


def redact(text: str) -> str:
    """Any log text with SNILS-, phone- and date-looking parts replaced by `***`."""
    return _UNDERSCORED_DIGITS_RE.sub(_mask_if_long, _PERSONAL_RE.sub("***", text))


def _mask_if_long(match: re.Match[str]) -> str:
    digits = sum(char.isdigit() for char in match.group())
    return "***" if digits >= _UNDERSCORED_MIN_DIGITS else match.group()


class RedactingFormatter(logging.Formatter):
    """A formatter that redacts the message and traceback (never the timestamp)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = redact(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, redacted like the text lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = safe_text(request_id)
        for name in _ACCESS_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def safe_text(text: str) -> str:
    """Client-supplied text fit for a log line: digit runs that could be personal masked."""
    return _DIGIT_RUN_RE.sub("***", text)


def safe_path(path: str) -> str:
    """A request path for a log line: shortened, digit runs masked."""
    return safe_text(path[:PATH_MAX_CHARS])


def safe_operation_name(name: str | None) -> str | None:
    """A client's operation name fit for a log line or a trace: a GraphQL name with any
    digit run that could be personal masked; None for anything else."""
    return safe_text(name) if name and _NAME_RE.match(name) else None


def log_request(
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    operation_name: str | None,
    request_id: str | None = None,
) -> None:
    """The request line: `POST /graphql 200 12.3ms op=MyChildren` (path and name made
    safe); in JSON its parts are fields, with the request id."""
    shown_path, shown_operation = safe_path(path), safe_operation_name(operation_name) or "-"
    access_log.info(
        "%s %s %d %.1fms op=%s",
        method,
        shown_path,
        status,
        duration_ms,
        shown_operation,
        extra={
            "method": method,
            "path": shown_path,
            "status": status,
            "duration_ms": round(duration_ms, 1),
            "operation": shown_operation,
            "request_id": request_id,
        },
    )
