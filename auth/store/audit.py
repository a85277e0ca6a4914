"""The gateway's records: sign-in events and the access audit (append-only tables).

Writers on the request path only enqueue (`Recorder.sign_in`, `Recorder.access`): a
plain append to an in-memory queue, no statement and no await. Identifiers are masked
at that moment (SNILS → `***-***-789 64`, phone → `+7912***01`, a SNILS or phone typed
as a login → `***`), so raw values never wait in memory for the writer. A background
task, started lazily in the running event loop by the first event, writes what is
queued in batches of up to `batch_size`, one statement per batch for both tables
(`INSERT ... SELECT FROM unnest(...)` in two data-modifying CTEs), with a clean context
(the writer's statements are never counted against the request that happened to start
it).

The linger: woken with fewer than `batch_size` records queued, the writer waits up to
`linger_s` (the gateway's SCHOOL_GATEWAY_AUDIT_LINGER_MS, 50 ms by default) for more
before it writes, so requests arriving one at a time share one INSERT instead of paying
one each. A queue reaching `batch_size` or a waiting `flush()`/`close()` ends the wait at
once; a retry after a failure does not linger (its backoff already waits). `linger_s=0`
writes as soon as the writer wakes.

Failure behaviour, by design lossy rather than blocking:
- The queue holds at most `max_queued` records (plus the batch being written). When it
  is full, the **oldest** record is dropped, counted (`dropped`) and a warning is logged
  (at most once per `DROP_LOG_INTERVAL_S`, with the running count). Enqueueing never
  blocks, never raises and never fails the request.
- When the database is unavailable (pool not open, connection refused or lost, server
  errors) the batch goes back to the front of the queue and the writer retries with an
  exponential backoff (0.5 s doubling up to 30 s); the queue bound applies meanwhile.
- A batch the database refuses as bad data (SQLSTATE classes 22 and 23) is dropped and
  counted; retrying it could never succeed.
- Errors are logged with their class and SQLSTATE only, never with the rows.
- A crash of the process (no `close()`) loses what is queued: at most `linger_s` of
  records more than a writer without the linger would (plus, as before, the batch being
  written and what waits for the database).

`flush()` waits until every record queued before the call is written or dropped, never
for the linger (bound it with `asyncio.timeout`); `close()` flushes for at most
`close_timeout_s`, drops and counts what is still unwritten, and stops the writer. A
later event starts a new writer, so a closed recorder is still safe to use.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Final, NamedTuple

import asyncpg

from gateway.core.identifiers import masked, masked_phone
from gateway.core.logging import redact
from gateway.core.metrics import count_sign_in

__all__ = [
    "SIGNED_IN",
    "AccessEvent",
    "Recorder",
    "SignInEvent",
    "masked",
    "masked_phone",
]

log = logging.getLogger(__name__)

SIGNED_IN = "SIGNED_IN"
METHODS: Final = frozenset({"ESIA", "PASSWORD", "REFRESH", "CLIENT"})
MAX_QUEUED: Final = 10_000
BATCH_SIZE: Final = 500
CLOSE_TIMEOUT_S: Final = 5.0
LINGER_S: Final = 0.0  # the class's default: write at once; the gateway passes its setting
RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0
DROP_LOG_INTERVAL_S: Final = 10.0
LOGIN_MAX_CHARS: Final = 64
TEXT_MAX_CHARS: Final = 200
# SQLSTATE classes of a batch that can never be written: data exception, integrity.
_PERMANENT_SQLSTATE_CLASSES: Final = frozenset({"22", "23"})


@dataclass(frozen=True, slots=True)
class SignInEvent:
    """One sign-in attempt. Raw SNILS/phone are masked by the recorder, never stored.

    `at` defaults to the moment the event is queued.
    """

    method: str  # ESIA | PASSWORD | REFRESH | CLIENT (a machine client's token request)
    outcome: str  # SIGNED_IN or an ErrorCode value
    snils: str | None = None
    phone: str | None = None
    login: str | None = None
    school_ids: tuple[int, ...] = ()
    account_id: str | None = None
    client_address: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """A request that returned data of these students."""

    at: datetime
    account_id: str
    role: str
    student_ids: tuple[int, ...]
    operation_name: str | None


# --- rows as stored ------------------------------------------------------------------


class SignInRow(NamedTuple):
    """A sign-in event as stored: identifiers masked, arrays as text literals."""

    at: datetime
    method: str
    outcome: str
    masked_snils: str | None
    masked_phone: str | None
    login: str | None
    school_ids: str
    account_id: str | None
    client_address: str | None
    event_id: str  # a retried batch inserts each event once (ON CONFLICT DO NOTHING)


class AccessRow(NamedTuple):
    """An access-audit row as stored."""

    at: datetime
    account_id: str
    role: str
    student_ids: str
    operation_name: str | None
    event_id: str


Row = SignInRow | AccessRow


def sign_in_row(event: SignInEvent) -> SignInRow | None:
    """The stored form of a sign-in event (masked); None (logged) when it cannot be stored."""
    if event.method not in METHODS:
        log.error("sign-in event with an unknown method dropped (outcome %s)", event.outcome)
        return None
    return SignInRow(
        at=event.at or datetime.now(UTC),
        method=event.method,
        outcome=event.outcome[:TEXT_MAX_CHARS],
        masked_snils=masked(event.snils) or None,
        masked_phone=masked_phone(event.phone) or None,
        login=_stored_login(event.login),
        school_ids=_int_array(event.school_ids),
        account_id=_uuid_or_none(event.account_id),
        client_address=event.client_address[:TEXT_MAX_CHARS] if event.client_address else None,
        event_id=str(uuid.uuid4()),
    )


def access_row(event: AccessEvent) -> AccessRow | None:
    """The stored form of an access event; None when there is nothing to audit."""
    account_id = _uuid_or_none(event.account_id)
    if not event.student_ids:
        return None
    if account_id is None:
        log.error("access event without a valid account id dropped")
        return None
    role = event.role.value if isinstance(event.role, Enum) else str(event.role)
    return AccessRow(
        at=event.at,
        account_id=account_id,
        role=role,
        student_ids=_int_array(event.student_ids),
        operation_name=event.operation_name[:TEXT_MAX_CHARS] if event.operation_name else None,
        event_id=str(uuid.uuid4()),
    )


def _int_array(values: Iterable[int]) -> str:
    """A sorted PostgreSQL integer[] literal ('{1,2}'); unnest cannot take ragged 2-D arrays."""
    return "{" + ",".join(str(value) for value in sorted({int(value) for value in values})) + "}"


def _stored_login(login: str | None) -> str | None:
    """The login as stored, shortened. A parent may type their SNILS or phone into the
    school login form: what looks like a SNILS, a phone or a date is masked (`redact`);
    a client id (a UUID, method CLIENT) is kept whole."""
    if not login:
        return None
    kept = login if _uuid_or_none(login) is not None else redact(login)
    return kept[:LOGIN_MAX_CHARS]


def _uuid_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


# One statement per batch: both tables, each from its columns' arrays. Each event has its
# own id, so a batch written again after its commit was not acknowledged (the connection
# lost in the middle of an outage) adds nothing twice: the audit stays exact.
INSERT_BATCH: Final = """
WITH sign_ins AS (
    INSERT INTO gateway.sign_in_events
        (at, method, outcome, masked_snils, masked_phone, login, school_ids, account_id,
         client_address, event_id)
    SELECT e.at, e.method, e.outcome, e.masked_snils, e.masked_phone, e.login,
           e.school_ids::integer[], e.account_id, e.client_address, e.event_id
    FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::uuid[], $9::text[], $10::uuid[])
        AS e(at, method, outcome, masked_snils, masked_phone, login, school_ids,
             account_id, client_address, event_id)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
), accesses AS (
    INSERT INTO gateway.access_audit
        (at, account_id, role, student_ids, operation_name, event_id)
    SELECT a.at, a.account_id, a.role, a.student_ids::integer[], a.operation_name, a.event_id
    FROM unnest($11::timestamptz[], $12::uuid[], $13::text[], $14::text[], $15::text[],
                $16::uuid[])
        AS a(at, account_id, role, student_ids, operation_name, event_id)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM sign_ins) + (SELECT count(*) FROM accesses)
"""


def batch_arguments(rows: Sequence[Row]) -> list[list[object]]:
    """The 16 array arguments of INSERT_BATCH: sign-in columns, then access columns."""
    sign_ins = [row for row in rows if isinstance(row, SignInRow)]
    accesses = [row for row in rows if isinstance(row, AccessRow)]
    return _columns(sign_ins, len(SignInRow._fields)) + _columns(accesses, len(AccessRow._fields))


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    return [[row[index] for row in rows] for index in range(width)]


# --- the recorder --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Queued:
    seq: int
    row: Row


class _Outcome(Enum):
    WRITTEN = "written"
    RETRY = "retry"
    REFUSED = "refused"


class Recorder:
    """Queues events and writes them in the background; `flush` waits for the queue.

    One recorder per application, used from one event loop at a time (a new loop gets
    a new writer task). See the module docstring for the linger and for what happens
    under failure.
    """

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        max_queued: int = MAX_QUEUED,
        batch_size: int = BATCH_SIZE,
        retry_first_s: float = RETRY_FIRST_S,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        linger_s: float = LINGER_S,
    ) -> None:
        if max_queued < 1 or batch_size < 1:
            raise ValueError("max_queued and batch_size must be positive")
        if not 0 <= linger_s < math.inf:
            raise ValueError("linger_s must be a finite number of seconds, 0 or more")
        self._pool = pool
        self._max_queued = max_queued
        self._batch_size = batch_size
        self._retry_first_s = retry_first_s
        self._close_timeout_s = close_timeout_s
        self._linger_s = linger_s
        self._queue: deque[_Queued] = deque()
        self._inflight: list[_Queued] = []
        self._next_seq = 0
        self._written = 0
        self._batches = 0
        self._dropped = 0
        self._lingering = False  # the writer waits for a fuller batch (enqueue need not wake it)
        self._flushers = 0  # flush() calls waiting: the writer must not linger
        self._last_drop_log = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()

    # -- counters -----------------------------------------------------------------

    @property
    def written(self) -> int:
        """Records written since the recorder was created."""
        return self._written

    @property
    def linger_s(self) -> float:
        """How long the writer waits for a fuller batch, seconds (0: not at all)."""
        return self._linger_s

    @property
    def batches(self) -> int:
        """Batches written (one INSERT statement each) since the recorder was created."""
        return self._batches

    @property
    def dropped(self) -> int:
        """Records dropped (queue overflow, refused batches, unwritten at close)."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Records queued or being written."""
        return len(self._queue) + len(self._inflight)

    # -- the request path ---------------------------------------------------------

    def sign_in(self, event: SignInEvent) -> None:
        """Queue a sign-in event (non-blocking; masked now; never raises for bad data)."""
        count_sign_in(event.method, event.outcome)
        row = sign_in_row(event)
        if row is not None:
            self._enqueue(row)

    def access(self, event: AccessEvent) -> None:
        """Queue an access-audit row (non-blocking; events without students are ignored)."""
        row = access_row(event)
        if row is not None:
            self._enqueue(row)

    def _enqueue(self, row: Row) -> None:
        if len(self._queue) >= self._max_queued:
            self._drop_oldest(len(self._queue) - self._max_queued + 1)
        self._queue.append(_Queued(self._next_seq, row))
        self._next_seq += 1
        self._wake()

    def _drop_oldest(self, count: int) -> None:
        for _ in range(count):
            self._queue.popleft()
        self._dropped += count
        self._progress.set()
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            log.warning(
                "recorder queue full (%d): oldest records dropped, %d dropped so far",
                self._max_queued,
                self._dropped,
            )

    def _wake(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here: written when a loop next flushes or records
            return
        if self._writer_runs_elsewhere(loop):
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._wakeup.set)
            return
        self._ensure_writer(loop)
        if self._lingering and len(self._queue) < self._batch_size:
            return  # the lingering writer takes this record with the others
        self._wakeup.set()

    # -- the writer ---------------------------------------------------------------

    def _writer_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def _writer_runs_elsewhere(self, loop: asyncio.AbstractEventLoop) -> bool:
        return (
            self._writer_alive()
            and self._loop is not loop
            and self._loop is not None
            and self._loop.is_running()
        )

    def _ensure_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a writer in `loop` unless one is already running there."""
        if self._writer_alive() and self._loop is loop:
            return
        self._requeue(self._inflight)  # an abandoned writer's batch (its loop is gone)
        self._inflight = []
        self._loop = loop
        self._lingering = False
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        # A fresh context: the request that happens to start the writer must not share
        # its context variables (the per-request statement counter) with it.
        self._task = loop.create_task(
            self._run(), name="gateway-recorder", context=contextvars.Context()
        )
        self._task.add_done_callback(self._writer_done)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if task is self._task:
            self._progress.set()  # a flush waiting on a dead writer wakes up to see it
        if not task.cancelled() and task.exception() is not None:
            log.error("recorder writer stopped", exc_info=task.exception())

    async def _run(self) -> None:
        me = asyncio.current_task()
        delay = self._retry_first_s
        retrying = False
        while self._task is me:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if not retrying:
                await self._linger()
                if not self._queue:
                    continue
            retrying = await self._write_next_batch() is _Outcome.RETRY
            if retrying:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                delay = self._retry_first_s

    async def _linger(self) -> None:
        """Wait up to `linger_s` for a full batch; a full queue or a flush ends it at once."""
        if self._linger_s <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        self._lingering = True
        try:
            while len(self._queue) < self._batch_size and not self._flushers:
                self._wakeup.clear()
                async with asyncio.timeout_at(deadline):
                    await self._wakeup.wait()
        except TimeoutError:
            return
        finally:
            self._lingering = False

    async def _write_next_batch(self) -> _Outcome:
        size = min(self._batch_size, len(self._queue))
        batch = [self._queue.popleft() for _ in range(size)]
        self._inflight = batch
        try:
            outcome = await self._write([queued.row for queued in batch])
        except asyncio.CancelledError:
            self._inflight = []
            self._requeue(batch)
            raise
        self._inflight = []
        if outcome is _Outcome.WRITTEN:
            self._written += len(batch)
            self._batches += 1
        elif outcome is _Outcome.REFUSED:
            self._dropped += len(batch)
        else:
            self._requeue(batch)
        self._progress.set()
        return outcome

    def _requeue(self, batch: Sequence[_Queued]) -> None:
        """Put a batch back in front of the queue, keeping the bound (oldest go first)."""
        self._queue.extendleft(reversed(batch))
        overflow = len(self._queue) - self._max_queued
        if overflow > 0:
            self._drop_oldest(overflow)

    async def _write(self, rows: Sequence[Row]) -> _Outcome:
        try:
            pool = self._pool()
        except RuntimeError:  # the pool is not open (yet, or any more)
            log.warning("recorder: database pool not open, %d records wait", self.pending)
            return _Outcome.RETRY
        try:
            await pool.execute(INSERT_BATCH, *batch_arguments(rows))
        except asyncpg.PostgresError as error:
            return self._refused_or_retry(error, len(rows))
        except (OSError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError) as error:
            # InternalClientError: a pooled connection caught mid-shutdown (gateway.core.outage).
            log.warning(
                "recorder: database unavailable (%s), %d records wait",
                type(error).__name__,
                self.pending,
            )
            return _Outcome.RETRY
        return _Outcome.WRITTEN

    def _refused_or_retry(self, error: asyncpg.PostgresError, count: int) -> _Outcome:
        sqlstate = str(getattr(error, "sqlstate", "") or "")
        if sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES:
            log.error(
                "recorder: database refused a batch of %d records (%s, SQLSTATE %s); dropped",
                count,
                type(error).__name__,
                sqlstate,
            )
            return _Outcome.REFUSED
        log.warning(
            "recorder: writing failed (%s, SQLSTATE %s), %d records wait",
            type(error).__name__,
            sqlstate,
            self.pending,
        )
        return _Outcome.RETRY

    # -- flushing and closing -----------------------------------------------------

    def _settled_below(self) -> int:
        """Every record with a sequence number below this is written or dropped."""
        candidates = [self._next_seq]
        if self._inflight:
            candidates.append(self._inflight[0].seq)
        if self._queue:
            candidates.append(self._queue[0].seq)
        return min(candidates)

    async def flush(self) -> None:
        """Wait until everything queued so far is written (or dropped), at once: the
        writer does not linger while a flush waits.

        Waits as long as the database is down: bound it with `asyncio.timeout`.
        RuntimeError if the writer died of a bug.
        """
        target = self._next_seq
        loop = asyncio.get_running_loop()
        self._flushers += 1  # the writer stops lingering: this flush must not wait for it
        try:
            while self._settled_below() < target:
                self._raise_if_writer_failed()
                if self._writer_runs_elsewhere(loop):
                    raise RuntimeError("the recorder's writer runs in another event loop")
                self._ensure_writer(loop)
                self._wakeup.set()
                self._progress.clear()
                await self._progress.wait()
        finally:
            self._flushers -= 1

    def _raise_if_writer_failed(self) -> None:
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._task = None  # the next event starts a fresh writer
            raise RuntimeError("the recorder's writer stopped") from error

    async def close(self) -> None:
        """Flush (at most `close_timeout_s`), drop what is still unwritten, stop the writer."""
        try:
            if self.pending:
                async with asyncio.timeout(self._close_timeout_s):
                    await self.flush()
        except TimeoutError:
            unwritten = self.pending
            log.warning("recorder closing: %d records could not be written, dropped", unwritten)
        finally:
            await self._stop_writer()
            self._drop_unwritten()

    def _drop_unwritten(self) -> None:
        count = len(self._queue) + len(self._inflight)
        self._queue.clear()
        self._inflight = []
        self._dropped += count

    async def _stop_writer(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if self._loop is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait({task})
