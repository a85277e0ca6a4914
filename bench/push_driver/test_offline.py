"""Offline tests of the push bench's client parsing and delivery matching (no server).

Run: .venv/bin/python -m pytest -q bench/push_driver/test_offline.py
"""

from __future__ import annotations

import math

import orjson
import pytest

from bench.push_driver.changes import Change
from bench.push_driver.client import (
    ChunkDecoder,
    EventSplitter,
    Received,
    StreamError,
    parse_head,
    received_of,
    request_bytes,
)
from bench.push_driver.report import match, percentile


def _next(typename: str, entity: str, student: int, cursor: str) -> bytes:
    key = {"MarkEvent": "markId", "AttendanceEvent": "attendanceId"}[typename]
    event = {"__typename": typename, "cursor": cursor, "studentId": str(student), key: entity}
    return b"event: next\ndata: " + orjson.dumps({"data": {"diaryEvents": event}}) + b"\n\n"


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_events_survive_chunking_split_anywhere() -> None:
    stream = _next("MarkEvent", "7", 5, "c1") + b":\n\n" + _next("AttendanceEvent", "9", 6, "c2")
    body = _chunked([stream[:13], stream[13:50], stream[50:]]) + b"ignored"
    for step in (1, 3, 7, 64):
        decoder, splitter, events = ChunkDecoder(), EventSplitter(), []
        for start in range(0, len(body), step):
            events += splitter.feed(decoder.feed(body[start : start + step]))
        assert decoder.finished
        assert splitter.heartbeats == 1
        received = [received_of(0, 1.0, e.data) for e in events if e.name == "next"]
        assert [(r.entity, r.student_id, r.cursor) for r in received] == [
            ("mark:7", 5, "c1"),
            ("attendance:9", 6, "c2"),
        ]


def test_an_error_event_is_a_stream_error() -> None:
    with pytest.raises(StreamError):
        received_of(0, 0.0, '{"errors": [{"message": "x"}]}')


def test_head_and_request() -> None:
    status, headers = parse_head(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json")
    assert (status, headers["content-type"]) == (401, "application/json")
    request = request_bytes("127.0.0.1", 80, "tok")
    head, _, body = request.partition(b"\r\n\r\n")
    assert b"Authorization: Bearer tok" in head and b"Accept: text/event-stream" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert orjson.loads(body)["query"].startswith("subscription Push")


def test_match_counts_missed_duplicated_and_foreign() -> None:
    changes = [Change("mark:1", 10, 100.0, True), Change("mark:2", 20, 100.0, True)]
    scopes = [frozenset({10}), frozenset({10, 20}), frozenset({30})]
    events = [
        Received(0, 100.1, "mark:1", 10, "a"),
        Received(1, 100.2, "mark:1", 10, "a"),
        Received(1, 100.3, "mark:1", 10, "a"),  # the same change and cursor again
        Received(2, 100.4, "mark:2", 20, "b"),  # another family's student
    ]
    result = match(changes, events, scopes)
    assert result.expected == 3  # (0, mark:1), (1, mark:1), (1, mark:2)
    assert result.missed == 1 and result.missed_examples == ["subscriber 1: mark:2"]
    assert result.duplicated == 2  # one repeated change + one repeated cursor
    assert result.foreign == 1
    assert [round(v) for v in result.latencies_ms] == [100, 200]


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (
        50.0,
        99.0,
        100.0,
    )
    assert math.isnan(percentile([], 0.99))
