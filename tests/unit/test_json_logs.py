"""The JSON log format: one object per line, redacted like text lines, with the request id
of the request being served; request ids from clients only when they are plain tokens."""

from __future__ import annotations

import json
import logging
import sys

from gateway.core.logging import REQUEST_ID, JsonFormatter, request_id_from


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("СНИЛС 112-233-445 95 в ошибке")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, args, info)


def test_a_line_is_one_redacted_json_object_with_the_request_id() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        line = JsonFormatter().format(_record("вход %s с телефона %s", "ok", "+7 912 555-01-01"))
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "gateway.test"
    assert entry["message"] == "вход ok с телефона ***"
    assert entry["request_id"] == "req-1"
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def test_an_exception_is_redacted_and_kept_on_the_line() -> None:
    entry = json.loads(JsonFormatter().format(_record("failed", exc=True)))
    assert "ValueError" in entry["exception"]
    assert "112-233-445 95" not in entry["exception"] and "***" in entry["exception"]
    assert "request_id" not in entry  # outside a request


def test_request_ids_from_clients_are_kept_only_when_plain() -> None:
    assert request_id_from("abc-123.x:y_z") == "abc-123.x:y_z"
    for bad in (None, "", "a b", "x" * 129, "ид", "a\nb"):
        generated = request_id_from(bad)
        assert len(generated) == 32 and generated.isalpha() and generated != bad
    assert request_id_from(None) != request_id_from(None)
