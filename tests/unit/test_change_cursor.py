"""Positions in the change feed (snapshots, what is delivered, the next position) and the
signed cursors that carry them (`resolvers.changes.cursor`).

The last tests replay random histories of transactions that write and commit in any
order against a reader that pages the way the feed's statement does (what is visible now
and not delivered, `upper`'s changes first, then by id): every change must come exactly
once, whether the reader goes on from a page's end or from one of its events.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import time
from dataclasses import dataclass, field

import pytest

from gateway.core.errors import ErrorCode
from resolvers.changes.cursor import (
    AFTER_ALL_STUDENTS,
    MAX_CURSOR_CHARS,
    CursorCodec,
    CursorError,
    CursorExpiredError,
    Position,
    Snapshot,
    at_snapshot,
)

SECRET = "unit-secret-unit-secret-unit-secret-0123456789"
NOW = 1_800_000_000
BASE = Snapshot(100, 110, frozenset({103, 107}))
UPPER = Snapshot(107, 120, frozenset({107, 115}))
LATER = Snapshot(115, 130, frozenset({115}))


# --- snapshots ---------------------------------------------------------------------------


def test_a_snapshot_parses_postgresqls_text_and_prints_it_back() -> None:
    snapshot = Snapshot.parse("100:110:107,103")
    assert snapshot == BASE
    assert snapshot.text() == "100:110:103,107"
    assert Snapshot.parse("838:838:") == Snapshot(838, 838)
    assert Snapshot.parse("838:838:").text() == "838:838:"
    assert Snapshot.from_record((100, 110, [107, 103])) == BASE
    assert BASE.record() == (100, 110, [103, 107])


@pytest.mark.parametrize(
    "text",
    ["", "100", "100:110", "110:100:", "0:5:", "100:110:99", "100:110:110", "a:b:", "1:2:3:4"],
)
def test_a_malformed_snapshot_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Snapshot.parse(text)


def test_a_snapshot_sees_what_committed_before_it() -> None:
    # Below xmin: finished before the snapshot.
    assert BASE.sees(1) and BASE.sees(99)
    # Between xmin and xmax: seen unless it was running.
    assert BASE.sees(100) and BASE.sees(104) and BASE.sees(109)
    assert not BASE.sees(103) and not BASE.sees(107)
    # At or after xmax: began after the snapshot.
    assert not BASE.sees(110) and not BASE.sees(111) and not BASE.sees(10**12)


# --- positions ---------------------------------------------------------------------------


def test_without_upper_only_the_base_is_delivered() -> None:
    position = at_snapshot(BASE, NOW)
    assert position == Position(BASE, NOW)
    assert position.delivered(99, 1, 1) and position.delivered(104, 10**9, 10**6)
    assert not position.delivered(103, 1, 1)  # running at the base: not yet
    assert not position.delivered(110, 1, 1)
    assert not position.in_upper(104) and not position.in_upper(103)


def test_with_upper_its_changes_up_to_after_are_delivered() -> None:
    position = Position(BASE, NOW, UPPER, NOW + 5, (40, 7))
    assert position.delivered(104, 99, 99)  # in the base, whatever the key
    # 103 committed between base and upper: delivered up to (change 40, student 7).
    assert position.delivered(103, 39, 99) and position.delivered(103, 40, 7)
    assert not position.delivered(103, 40, 8) and not position.delivered(103, 41, 1)
    assert position.in_upper(103) and position.in_upper(112)
    # 107 still running at upper, 115 too, 120 after it: none delivered, none in upper.
    for xid in (107, 115, 120):
        assert not position.delivered(xid, 1, 1) and not position.in_upper(xid)


def test_past_a_change_in_upper_keeps_both_snapshots() -> None:
    position = Position(BASE, NOW, UPPER, NOW + 5, (40, 7))
    after = position.past(LATER, NOW + 9, in_upper=True, key=(45, 3))
    assert after == Position(BASE, NOW, UPPER, NOW + 5, (45, 3))


def test_past_a_change_outside_upper_upper_becomes_the_base() -> None:
    position = Position(BASE, NOW, UPPER, NOW + 5, (40, 7))
    after = position.past(LATER, NOW + 9, in_upper=False, key=(12, 3))
    assert after == Position(UPPER, NOW + 5, LATER, NOW + 9, (12, 3))
    assert after.delivered(103, 10**9, 1)  # all of upper now
    assert after.delivered(107, 12, 3) and not after.delivered(107, 12, 4)


def test_past_a_change_without_upper_the_page_snapshot_becomes_upper() -> None:
    position = at_snapshot(BASE, NOW)
    after = position.past(UPPER, NOW + 5, in_upper=False, key=(30, 2))
    assert after == Position(BASE, NOW, UPPER, NOW + 5, (30, 2))
    assert after.delivered(103, 30, 2) and not after.delivered(103, 30, 3)
    assert not after.delivered(107, 1, 1)


# --- cursors -----------------------------------------------------------------------------

POSITIONS = [
    at_snapshot(BASE, NOW),
    Position(BASE, NOW, UPPER, NOW + 5, (40, 7)),
    Position(Snapshot(5, 5), NOW, Snapshot(5, 9), NOW, (12, AFTER_ALL_STUDENTS)),
]


@pytest.mark.parametrize("position", POSITIONS)
def test_a_cursor_gives_back_its_position(position: Position) -> None:
    codec = CursorCodec(SECRET, max_age_s=3600)
    cursor = codec.encode(position)
    assert cursor.isascii() and "|" not in cursor and len(cursor) < 200
    assert codec.decode(cursor, now=NOW + 10) == position
    assert CursorCodec(SECRET, max_age_s=60).decode(cursor, now=NOW) == position


def _tampered(cursor: str) -> list[str]:
    body, mac = cursor.split(".")
    middle = len(body) // 2
    return [
        body[:middle] + ("A" if body[middle] != "A" else "B") + body[middle + 1 :] + "." + mac,
        body + "." + ("A" if mac[0] != "A" else "B") + mac[1:],
        body[:-4] + "." + mac,
        cursor[: len(cursor) // 2],
        cursor[:-1],
        body,
        body + "." + mac + "." + mac,
        "",
        ".",
        "не.курсор",
        "!!!!.????",
        "x" * (MAX_CURSOR_CHARS + 1),
        cursor + "A" * (MAX_CURSOR_CHARS - len(cursor) + 1),
    ]


@pytest.mark.parametrize("index", range(13))
def test_a_tampered_cursor_is_refused(index: int) -> None:
    codec = CursorCodec(SECRET, max_age_s=3600)
    cursor = _tampered(codec.encode(POSITIONS[1]))[index]
    with pytest.raises(CursorError) as refused:
        codec.decode(cursor, now=NOW)
    assert refused.value.extensions == {"code": "BAD_USER_INPUT"}
    assert "Курсор" in refused.value.message


def _signed(body: str) -> str:
    """A body signed as the codec signs (to reach the checks behind the signature)."""
    key = hmac.new(SECRET.encode(), b"school-gateway change cursor", "sha256").digest()
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()[:12]

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return b64(body.encode()) + "." + b64(mac)


def test_the_signing_scheme_is_the_one_checked_below() -> None:
    codec = CursorCodec(SECRET, max_age_s=3600)
    assert _signed(f"1|100:110:103,107|{NOW}||0|0|0") == codec.encode(POSITIONS[0])


@pytest.mark.parametrize(
    "body",
    [
        f"2|100:110:|{NOW}||0|0|0",  # another version
        f"1|110:100:|{NOW}||0|0|0",  # not a snapshot
        f"1|100:110:|{NOW}|120:100:|0|0|0",
        "1|100:110:|soon||0|0|0",
        f"1|100:110:|{NOW}||0|0",  # a field missing
        f"1|100:110:|{NOW}||0|0|0|0",
        "",
    ],
)
def test_a_signed_body_that_is_not_a_position_is_refused(body: str) -> None:
    with pytest.raises(CursorError):
        CursorCodec(SECRET, max_age_s=3600).decode(_signed(body), now=NOW)


def test_an_old_cursor_is_expired() -> None:
    codec = CursorCodec(SECRET, max_age_s=3600)
    cursor = codec.encode(POSITIONS[1])
    assert codec.decode(cursor, now=NOW + 3600) == POSITIONS[1]
    with pytest.raises(CursorExpiredError) as expired:
        codec.decode(cursor, now=NOW + 3601)
    assert expired.value.extensions == {"code": ErrorCode.CURSOR_EXPIRED.value}
    assert "устарел" in expired.value.message
    # The age counts from the base snapshot, not from upper.
    newer_upper = Position(BASE, NOW - 4000, UPPER, NOW, (1, 1))
    with pytest.raises(CursorExpiredError):
        codec.decode(codec.encode(newer_upper), now=NOW)


def test_a_cursor_of_another_secret_is_refused() -> None:
    ours = CursorCodec(SECRET, max_age_s=3600)
    theirs = CursorCodec(SECRET + "x", max_age_s=3600)
    cursor = theirs.encode(POSITIONS[1])
    assert theirs.decode(cursor, now=NOW) == POSITIONS[1]
    with pytest.raises(CursorError):
        ours.decode(cursor, now=NOW)
    assert ours.encode(POSITIONS[1]) != cursor


# --- random histories --------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    """One change's copy for one student, as a page row has it."""

    xid: int
    id: int
    student: int


@dataclass
class Database:
    """Transactions taking xids, writing changes (ids in write order), committing in any
    order; snapshots as PostgreSQL takes them."""

    next_xid: int = 100
    next_id: int = 1
    running: dict[int, list[Copy]] = field(default_factory=dict)
    committed: list[Copy] = field(default_factory=list)

    def begin(self) -> int:
        xid, self.next_xid = self.next_xid, self.next_xid + 1
        self.running[xid] = []
        return xid

    def write(self, xid: int, students: list[int]) -> None:
        """One change (a class's: several students)."""
        change_id, self.next_id = self.next_id, self.next_id + 1
        self.running[xid] += [Copy(xid, change_id, student) for student in students]

    def commit(self, xid: int) -> None:
        self.committed += self.running.pop(xid)

    def snapshot(self) -> Snapshot:
        running = frozenset(self.running)
        return Snapshot(min(running, default=self.next_xid), self.next_xid, running)


@dataclass(frozen=True)
class Page:
    copies: list[tuple[Copy, bool]]  # with in_upper
    start: Position
    snapshot: Snapshot
    full: bool

    def after(self, index: int) -> Position:
        """The position of the event at `index` (`resolvers.changes.loaders.Page`)."""
        copy, in_upper = self.copies[index]
        return self.start.past(self.snapshot, NOW, in_upper=in_upper, key=(copy.id, copy.student))

    @property
    def end(self) -> Position:
        if not self.full:
            return at_snapshot(self.snapshot, NOW)
        return self.after(len(self.copies) - 1)


def read_page(db: Database, position: Position, limit: int) -> Page:
    """What the feed's statement returns: visible now, not delivered, `upper` first."""
    snapshot = db.snapshot()
    waiting = [
        (copy, position.in_upper(copy.xid))
        for copy in db.committed
        if snapshot.sees(copy.xid) and not position.delivered(copy.xid, copy.id, copy.student)
    ]
    waiting.sort(key=lambda row: (not row[1], row[0].id, row[0].student))
    copies = waiting[:limit]
    return Page(copies, position, snapshot, full=len(copies) >= limit)


def replay(seed: int) -> None:
    """A random history read page by page; checks every copy comes exactly once."""
    rng = random.Random(seed)
    db = Database()
    position = at_snapshot(db.snapshot(), NOW)
    delivered: list[Copy] = []
    for _ in range(rng.randint(20, 120)):
        step = rng.random()
        if step < 0.2 or not db.running:
            db.begin()
        elif step < 0.55:
            students = rng.choice([[1], [2], [3], [1, 2], [2, 3], [1, 2, 3]])
            db.write(rng.choice(list(db.running)), students)
        elif step < 0.75:
            db.commit(rng.choice(list(db.running)))
        else:
            page = read_page(db, position, rng.randint(1, 4))
            if page.copies and rng.random() < 0.3:
                # The client goes on from one of the page's events (e.g. after a reconnect).
                index = rng.randrange(len(page.copies))
                delivered += [copy for copy, _ in page.copies[: index + 1]]
                position = page.after(index)
            else:
                delivered += [copy for copy, _ in page.copies]
                position = page.end
    for xid in list(db.running):
        db.commit(xid)
    while True:
        page = read_page(db, position, rng.randint(1, 4))
        delivered += [copy for copy, _ in page.copies]
        position = page.end
        if not page.copies:
            break
    assert len(delivered) == len(set(delivered)), f"seed {seed}: a copy came twice"
    assert sorted(delivered, key=lambda c: (c.id, c.student)) == sorted(
        db.committed, key=lambda c: (c.id, c.student)
    ), f"seed {seed}: a copy was lost"


@pytest.mark.parametrize("block", range(4))
def test_random_histories_deliver_every_change_once(block: int) -> None:
    for seed in range(block * 250, (block + 1) * 250):
        replay(seed)


def test_a_history_where_id_order_is_not_commit_order() -> None:
    """The transaction that wrote first commits last: an id-only reader would skip it."""
    db = Database()
    position = at_snapshot(db.snapshot(), NOW)
    slow, quick = db.begin(), db.begin()
    db.write(slow, [1])  # id 1
    db.write(quick, [1])  # id 2
    db.commit(quick)
    first = read_page(db, position, 10)
    assert [c.id for c, _ in first.copies] == [2] and not first.full
    db.commit(slow)
    second = read_page(db, first.end, 10)
    assert [c.id for c, _ in second.copies] == [1]
    assert read_page(db, second.end, 10).copies == []


# A cursor must be exactly as issued: base64.urlsafe_b64decode alone drops characters it
# does not know and accepts padding.
@pytest.mark.parametrize("edit", ["insert-bang", "padding", "leading-space"])
def test_a_cursor_not_as_issued_is_refused(edit: str) -> None:
    codec = CursorCodec("s" * 40, max_age_s=3600)
    cursor = codec.encode(at_snapshot(Snapshot(10, 20, frozenset({12})), int(time.time())))
    body, mac = cursor.split(".")
    changed = {
        "insert-bang": body[:5] + "!!!!" + body[5:] + "." + mac,
        "padding": body + "=." + mac,
        "leading-space": "    " + cursor,
    }[edit]
    with pytest.raises(CursorError):
        codec.decode(changed, now=time.time())
