"""Positions in the change feed and the opaque, signed cursors that carry them.

The change log (`diary_api.diary_changes`) gives every change the id of the transaction
that wrote it (`xid`). Transactions commit in any order, so "changes with an id above the
last one seen" would skip a change whose transaction committed late. A position is
therefore a set of snapshots: everything visible in the snapshot `base` has been
delivered, and of what became visible between `base` and `upper` (when there is an
`upper`), the changes up to `after` (change id, student id) in feed order. What comes
next is what is visible now and not delivered, oldest snapshot first, then by id: no
change is skipped and none repeated, whatever the commit order, and no writer waits.

A cursor is the position as text plus an HMAC (the token signing secret, under a label of
its own): a client cannot make one up (a made-up snapshot could ask the database to scan
the whole log), and one older than the retention is refused (CURSOR_EXPIRED).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NewType

from gateway.core.errors import ApiError, ErrorCode

_VERSION: Final = "1"
_MAC_BYTES: Final = 12
# The longest cursor accepted (two snapshots of a busy server's running transactions).
MAX_CURSOR_CHARS: Final = 16_384
# Past the last change of a snapshot's batch: every student's copy of it.
AFTER_ALL_STUDENTS: Final = 2**31 - 1


# A cursor as the API shows it (the `ChangeCursor` scalar).
ChangeCursor = NewType("ChangeCursor", str)


class CursorError(ApiError):
    """A cursor this gateway did not issue, or one that was changed."""

    code = ErrorCode.BAD_USER_INPUT

    def __init__(self) -> None:
        super().__init__("Курсор изменений не распознан: запросите изменения без курсора.")


class CursorExpiredError(ApiError):
    """A cursor older than the change log's retention."""

    code = ErrorCode.CURSOR_EXPIRED


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A PostgreSQL snapshot (`pg_snapshot`): which transactions' writes it sees."""

    xmin: int
    xmax: int
    running: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """From PostgreSQL's text form `xmin:xmax:xip,xip,...`."""
        xmin, xmax, xip = text.split(":")
        running = frozenset(int(x) for x in xip.split(",")) if xip else frozenset()
        snapshot = cls(int(xmin), int(xmax), running)
        if not 0 < snapshot.xmin <= snapshot.xmax or any(
            not snapshot.xmin <= x < snapshot.xmax for x in running
        ):
            raise ValueError("not a snapshot")
        return snapshot

    @classmethod
    def from_record(cls, value: tuple[int, int, Sequence[int]]) -> Snapshot:
        """From asyncpg's form of a `pg_snapshot`: (xmin, xmax, running xids)."""
        return cls(int(value[0]), int(value[1]), frozenset(int(x) for x in value[2]))

    def record(self) -> tuple[int, int, list[int]]:
        """asyncpg's form of a `pg_snapshot` parameter."""
        return (self.xmin, self.xmax, sorted(self.running))

    def text(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in sorted(self.running))}"

    def covers(self, other: Snapshot) -> bool:
        """Whether everything visible in `other` is visible in this snapshot (it was
        taken later, or sees the same). Below `other.xmax` this snapshot sees every
        transaction but its running ones, so it covers `other` unless one of those is
        visible in `other`, or `other` reaches past it."""
        return self.xmax >= other.xmax and not any(other.sees(x) for x in self.running)

    def sees(self, xid: int) -> bool:
        """Whether a committed transaction `xid` is visible in this snapshot
        (`pg_visible_in_snapshot`)."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.running)


@dataclass(frozen=True, slots=True)
class Position:
    """What a reader has had of the feed (see the module's doc). `base_at`, `upper_at`:
    when those snapshots were taken (Unix seconds; the retention counts from `base_at`)."""

    base: Snapshot
    base_at: int
    upper: Snapshot | None = None
    upper_at: int = 0
    after: tuple[int, int] = (0, 0)

    def delivered(self, xid: int, change_id: int, student_id: int) -> bool:
        """Whether the copy of change `change_id` (of transaction `xid`) for this student
        is already behind this position."""
        if self.base.sees(xid):
            return True
        return (
            self.upper is not None
            and self.upper.sees(xid)
            and (change_id, student_id) <= self.after
        )

    @property
    def newest(self) -> Snapshot:
        """The latest snapshot of the position."""
        return self.upper if self.upper is not None else self.base

    def in_upper(self, xid: int) -> bool:
        """Whether a change not yet delivered belongs to `upper` (it comes first)."""
        return self.upper is not None and self.upper.sees(xid)

    def past(
        self, snapshot: Snapshot, taken_at: int, *, in_upper: bool, key: tuple[int, int]
    ) -> Position:
        """The position right after the copy `key` (change id, student id) of a page read
        from this position at `snapshot`; `in_upper` as the page said of it. Pages give
        `upper`'s changes first, so once past one that is not in `upper`, all of
        `upper` is delivered and `snapshot` takes its place."""
        if in_upper:
            return Position(self.base, self.base_at, self.upper, self.upper_at, key)
        if self.upper is not None:
            return Position(self.upper, self.upper_at, snapshot, taken_at, key)
        return Position(self.base, self.base_at, snapshot, taken_at, key)


def at_snapshot(snapshot: Snapshot, taken_at: int) -> Position:
    """Everything visible in `snapshot` delivered, nothing else."""
    return Position(snapshot, taken_at)


class CursorCodec:
    """Positions to and from cursors, signed with a key derived from the token secret."""

    def __init__(self, secret: str, *, max_age_s: int) -> None:
        self._key = hmac.new(secret.encode(), b"school-gateway change cursor", "sha256").digest()
        self.max_age_s = max_age_s

    def encode(self, position: Position) -> ChangeCursor:
        upper = position.upper.text() if position.upper is not None else ""
        fields = (
            _VERSION,
            position.base.text(),
            str(position.base_at),
            upper,
            str(position.upper_at),
            str(position.after[0]),
            str(position.after[1]),
        )
        body = "|".join(fields).encode()
        return ChangeCursor(_b64(body) + "." + _b64(self._mac(body)))

    def decode(self, cursor: str, *, now: float) -> Position:
        """The position of a cursor this gateway issued; CursorError or CursorExpiredError."""
        body = self._verified(cursor)
        try:
            version, base, base_at, upper, upper_at, after_id, after_student = body.decode().split(
                "|"
            )
            if version != _VERSION:
                raise ValueError(version)
            position = Position(
                Snapshot.parse(base),
                int(base_at),
                Snapshot.parse(upper) if upper else None,
                int(upper_at),
                (int(after_id), int(after_student)),
            )
        except ValueError:
            raise CursorError() from None
        if now - position.base_at > self.max_age_s:
            raise CursorExpiredError()
        return position

    def _verified(self, cursor: str) -> bytes:
        if len(cursor) > MAX_CURSOR_CHARS or cursor.count(".") != 1:
            raise CursorError()
        body_text, mac_text = cursor.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            raise CursorError() from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise CursorError()
        return body

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """The bytes of unpadded base64url text, as `_b64` writes it and only so."""
    padded = text + "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error) as error:
        raise ValueError("not base64") from error
    if _b64(data) != text:
        raise ValueError("not canonical base64")
    return data
