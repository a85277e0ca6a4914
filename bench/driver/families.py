"""The `families` workload: many real parent accounts, each request a random family's week.

From the bench database, `FAMILY_COUNT` parents (persons, by SNILS) with linked students
are picked with the run's seed. Each gets its gateway account and a session-bound access
token through the project's own code (`auth.store.accounts.upsert_parent_account`,
`auth.store.sessions.issue_dev_token`: a new API session, access token valid for the
bench's SCHOOL_GATEWAY_JWT_TTL, a day, so every token outlives the run), and its scope is
read as the gateway reads it (`load_viewer`): the same student ids go to PostGraphile.

Three files per database under bench/.data/families/<database>/, read by
bench/wrk/families.lua:
- `gateway.tsv`, `postgraphile.tsv`, `postgraphile-rls.tsv`, `raw-limit.tsv`: one line
  per family, `<Authorization><TAB><JSON body>` (bodies are single-line JSON;
  PostGraphile's and the raw limit's authorization is empty, PostGraphile-RLS's is the
  family's JWT: the claims of the parent registry records the gateway matches,
  `bench.driver.rls.parent_claims`; the raw limit's body is its variables);
- `sequence.txt`: the order of requests, one family number (1-based) per line, drawn
  with replacement from the seed: both targets get the same sequence of families;
- `students.txt`: every family's student ids (the writer works in their schools);
- `families.json`: the families with their tokens, reused by the next run on the same
  data (database, seed, today, count) while every session is live and every token
  valid for `REUSE_MARGIN_S` more (so runs do not pile up sessions), and signed with
  the current PostGraphile-RLS secret.

Every file is written 0600 (`write_private`): the request files and families.json hold
live bearer tokens.

Steady state, not cold start: before a target's first families run every family's request
is sent once (`warm_pass`), so the gateway's response cache holds what an evening of
random families leaves in it (all of them up to its `MAX_ENTRIES`, else the most recently
read). Later runs of the target start from what the earlier ones left. The cache's misses
are split by replaying (`CacheReplay`) the families each run asked for (bench/wrk/families.lua
writes each wrk thread's place in the sequence and count) through the gateway's own
`BoundedCache` with its bounds: a miss of a family not in the replayed cache is first-time
(evicted, or never read); every other diary read is a family whose cached answer the
writer's changes had made stale (or, rarely, two requests of one uncached family in flight
at once).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from auth.store.accounts import load_viewer, upsert_parent_account
from auth.store.sessions import issue_dev_token
from bench.driver import rls
from bench.driver.database import Database, gateway_settings, jwt_secret_fingerprint
from bench.driver.operations import Kind, Request, load_operation
from bench.driver.targets import NO_CACHE_SUFFIX, PROJECT_ROOT, Target
from bench.driver.writer import WriterProcess, start_writer
from gateway.core.bounded_cache import ENTRY_OVERHEAD, BoundedCache
from gateway.core.db import create_pool
from gateway.http.response_cache import (
    BYTES_PER_ID,
    MAX_BODY_BYTES,
    MAX_BYTES,
    MAX_ENTRIES,
    VIEWER_BYTES,
)

FAMILY_COUNT = 10_000  # bench/run --families; --quick: 2,000 (bench/driver/config.py)
SEQUENCE_LENGTH = 400_000
# Each warm-up and each timed run of a target begins at its own part of the sequence
# (2 parts per concurrency), so a run does not start with the families the last one read.
SEQUENCE_PART = 50_000
PEERS = ("gateway", "postgraphile", "postgraphile-rls", "raw-limit")
SEQUENCE_FILE = "sequence.txt"
STUDENTS_FILE = "students.txt"
TOKENS_FILE = "families.json"
REUSE_MARGIN_S = 6 * 3600
WARM_CONCURRENCY = 8
WARM_TIMEOUT_S = 900.0
WARM_PROGRESS_EVERY = 2500
RUNS_DIRECTORY = "runs"

# Parent persons (a well-formed SNILS) with at least one linked student, in a fixed order.
_PARENTS = r"""
SELECT p.snils, min(p.phone) AS phone,
       min(concat_ws(' ', p.last_name, p.first_name, p.patronymic)) AS full_name
FROM school.parents p
WHERE p.snils ~ '^[0-9]{11}$'
  AND EXISTS (SELECT 1 FROM school.parent_students ps WHERE ps.parent_id = p.id)
GROUP BY p.snils
ORDER BY p.snils
"""


@dataclass(frozen=True, slots=True)
class Family:
    """One parent's account, access token and the students the gateway lets them see."""

    account_id: str
    token: str
    student_ids: tuple[int, ...]
    rls_token: str


@dataclass(frozen=True, slots=True)
class Families:
    """The families of one run and where their request files are."""

    families: tuple[Family, ...]
    directory: Path
    week_from: date
    week_to: date

    def file(self, peer: str) -> Path:
        return self.directory / f"{peer}.tsv"

    @property
    def sequence(self) -> Path:
        return self.directory / SEQUENCE_FILE

    @property
    def students(self) -> Path:
        """The families' student ids, one a line (the writer's input)."""
        return self.directory / STUDENTS_FILE

    @property
    def school_student_ids(self) -> tuple[int, ...]:
        """Every student of every family (the writer works in their schools)."""
        return tuple(sorted({sid for family in self.families for sid in family.student_ids}))


async def pick_parents(url: str, *, count: int, seed: int) -> list[asyncpg.Record]:
    """`count` parent persons with linked students, sampled with the seed."""
    conn = await asyncpg.connect(url)
    try:
        rows = list(await conn.fetch(_PARENTS))
    finally:
        await conn.close()
    if len(rows) < count:
        raise RuntimeError(f"only {len(rows)} parents with children; use a larger --scale")
    return random.Random(seed).sample(rows, count)


async def _make_family(pool: asyncpg.Pool, database: Database, row: asyncpg.Record) -> Family:
    settings = gateway_settings(database.gateway_url)
    account_id = await upsert_parent_account(
        pool, snils=row["snils"], phone=row["phone"], display_name=row["full_name"]
    )
    viewer = await load_viewer(pool, account_id)
    if viewer is None or not viewer.student_ids:
        raise RuntimeError(f"parent account {account_id} has no children")
    token = await issue_dev_token(pool, settings, account_id)
    scope = sorted(viewer.student_ids)
    parent_ids = await rls.parent_records(pool, row["snils"], row["phone"], scope)
    rls_token = rls.sign_jwt(rls.parent_claims(parent_ids))
    return Family(account_id, token, tuple(scope), rls_token)


async def make_families(
    database: Database, *, today: date, seed: int, directory: Path, count: int = FAMILY_COUNT
) -> Families:
    """Accounts, tokens and request files of `count` families (the week of `today`);
    the last run's, if still good for this data (`families.json`)."""
    key = {
        "database": database.name,
        "seed": seed,
        "today": today.isoformat(),
        "count": count,
        "rls_secret": rls.secret_fingerprint(),  # tokens signed with another secret: new ones
        "gateway_secret": jwt_secret_fingerprint(),  # the same for the gateway's tokens
    }
    families = await _reusable(directory / TOKENS_FILE, key, database.url)
    if families is None:
        families = await _new_families(database, count=count, seed=seed)
        _save(directory / TOKENS_FILE, key, families)
    monday = today - timedelta(days=today.weekday())
    result = Families(tuple(families), directory, monday, monday + timedelta(days=6))
    write_files(result, seed=seed)
    return result


async def _new_families(database: Database, *, count: int, seed: int) -> list[Family]:
    rows = await pick_parents(database.url, count=count, seed=seed)
    settings = gateway_settings(database.gateway_url)
    pool = await create_pool(database.gateway_url, dataclasses.replace(settings, pool_min_size=1))
    try:
        # A few at a time: the pool has at most 10 connections.
        families: list[Family] = []
        for start in range(0, len(rows), 8):
            chunk = rows[start : start + 8]
            families += await asyncio.gather(*(_make_family(pool, database, r) for r in chunk))
    finally:
        await pool.close()
    return families


_LIVE_SESSIONS = """
SELECT count(*) FROM gateway.sessions
WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL
  AND expires_at > now() + make_interval(secs => $2)
"""


async def _reusable(path: Path, key: dict[str, Any], url: str) -> list[Family] | None:
    """The saved families if they are this data's and every token outlives the margin."""
    families = _load(path, key)
    if families is None:
        return None
    deadline = time.time() + REUSE_MARGIN_S
    claims = [_claims(token) for f in families for token in (f.token, f.rls_token)]
    if any(claim["exp"] < deadline for claim in claims):
        return None
    sessions = [_claims(f.token)["sid"] for f in families]
    conn = await asyncpg.connect(url)
    try:
        live = await conn.fetchval(_LIVE_SESSIONS, sessions, float(REUSE_MARGIN_S))
    finally:
        await conn.close()
    return families if live == len(families) else None


def _save(path: Path, key: dict[str, Any], families: list[Family]) -> None:
    saved = {"key": key, "families": [dataclasses.astuple(f) for f in families]}
    write_private(path, json.dumps(saved))


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only (0600: the files hold live
    bearer tokens), also when the file existed with a wider mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _load(path: Path, key: dict[str, Any]) -> list[Family] | None:
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("key") != key:
        return None
    return [Family(a, t, tuple(ids), r) for a, t, ids, r in saved["families"]]


def _claims(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified (only to read our own tokens' expiry and session)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def peer_of(target: Target) -> str:
    """Which request file a target reads."""
    if target.kind is Kind.GATEWAY:
        return "gateway"
    if target.kind is Kind.POSTGRAPHILE:
        return "postgraphile-rls" if target.rls else "postgraphile"
    return "raw-limit"


def requests_of(families: Families, peer: str) -> list[Request]:
    """Each family's request for a peer (`PEERS`), in family order."""
    kind = {"gateway": Kind.GATEWAY, "raw-limit": Kind.RAW}.get(peer, Kind.POSTGRAPHILE)
    operation = load_operation("parent-week")
    week = {"from": families.week_from.isoformat(), "to": families.week_to.isoformat()}
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    requests = []
    for family in families.families:
        variables: dict[str, Any] = dict(week)
        if kind is not Kind.GATEWAY:
            variables = {"studentIds": list(family.student_ids), **week}
        if kind is Kind.RAW:  # the raw limit's body is the variables (operations.py)
            requests.append(Request("/parent-week", _json(variables), headers))
            continue
        payload = {"query": operation.documents[kind], "variables": variables}
        token = {"gateway": family.token, "postgraphile-rls": family.rls_token}.get(peer)
        extra = {"Authorization": f"Bearer {token}"} if token else {}
        requests.append(Request("/graphql", _json(payload), headers | extra))
    return requests


def write_files(families: Families, *, seed: int) -> None:
    """The request files of both target kinds and the seeded sequence of families."""
    families.directory.mkdir(parents=True, exist_ok=True)
    for peer in PEERS:
        lines = [
            f"{request.headers.get('Authorization', '')}\t{request.body.decode()}"
            for request in requests_of(families, peer)
        ]
        write_private(families.file(peer), "\n".join(lines) + "\n")
    order = sequence(len(families.families), seed=seed)
    write_private(families.sequence, "\n".join(map(str, order)) + "\n")
    write_private(families.students, "\n".join(map(str, families.school_student_ids)) + "\n")


def sequence(count: int, *, seed: int, length: int = SEQUENCE_LENGTH) -> Sequence[int]:
    """Family numbers (1-based) drawn with replacement: a random family per request."""
    rng = random.Random(f"families-{seed}")
    return [rng.randrange(count) + 1 for _ in range(length)]


def _read_sequence(path: Path) -> list[int]:
    with path.open(encoding="utf-8") as file:
        return [int(line) for line in file if line.strip()]


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


VERSIONS_BYTES = 64  # a versions token's length, estimated (response_cache._entry_bytes)


class CacheReplay:
    """The response cache of one gateway process, replayed from which families were read:
    the gateway's own `BoundedCache` with its bounds, one entry per family, each the size
    the gateway counts for it (the body as the warm pass received it, estimated besides)."""

    def __init__(self, sizes: dict[int, int]) -> None:
        self.cache: BoundedCache[int, bool] = BoundedCache(
            MAX_ENTRIES, MAX_BYTES, max_entry_bytes=MAX_BODY_BYTES + ENTRY_OVERHEAD
        )
        self.sizes = sizes

    def read(self, family: int) -> bool:
        """One request of `family` (1-based): whether its answer was in the cache (a
        miss stores it, a hit makes it the most recent: the same order either way)."""
        if self.cache.get(family) is not None:
            return True
        self.cache.put(family, True, self.sizes.get(family, 0))
        return False


def entry_bytes(body: int, family: Family) -> int:
    """What the gateway counts for a family's cached answer (`_entry_bytes`): the body,
    the viewer (students, schools: at most as many) and the students read."""
    ids = 3 * len(family.student_ids)
    return body + VERSIONS_BYTES + VIEWER_BYTES + ENTRY_OVERHEAD + BYTES_PER_ID * ids


async def warm_pass(target: Target, requests: Sequence[Request]) -> list[tuple[int, int]]:
    """Every request once, `WARM_CONCURRENCY` at a time, in order, with a progress line
    now and then: (family number, body bytes) in the order they were answered."""
    answered: list[tuple[int, int]] = []
    pending = iter(enumerate(requests, start=1))
    started = time.monotonic()
    limits = httpx.Limits(max_connections=WARM_CONCURRENCY)

    async def worker(client: httpx.AsyncClient) -> None:
        for number, request in pending:
            response = await client.post(
                request.path, content=request.body, headers=request.headers
            )
            response.raise_for_status()
            answered.append((number, len(response.content)))
            if len(answered) % WARM_PROGRESS_EVERY == 0 and len(answered) < len(requests):
                _progress(target, len(answered), len(requests), started)

    async with httpx.AsyncClient(base_url=target.base_url, timeout=60, limits=limits) as client:
        workers = (worker(client) for _ in range(WARM_CONCURRENCY))
        await asyncio.wait_for(asyncio.gather(*workers), WARM_TIMEOUT_S)
    return answered


def _progress(target: Target, done: int, total: int, started: float) -> None:
    seconds = time.monotonic() - started
    rate = done / seconds if seconds > 0 else 0.0
    print(
        f"    families: warming {target.label}: {done:,}/{total:,} families read once "
        f"({seconds:.0f} s, {rate:.0f} req/s){', done' if done == total else ''}",
        flush=True,
    )


def counted(count: int) -> str:
    """How many families, against the gateway's cache (the report's families line)."""
    share = min(1.0, MAX_ENTRIES / count)
    return (
        f"{count:,} families (the gateway's response cache holds {MAX_ENTRIES:,} answers "
        f"per process: {100 * share:.0f}% of them)"
    )


def replays_cache(target: Target) -> bool:
    """Whether a target's misses can be replayed: one gateway process with the cache."""
    return (
        target.kind is Kind.GATEWAY
        and target.processes == 1
        and NO_CACHE_SUFFIX.strip() not in target.label.split()
    )


def read_positions(path: Path) -> list[tuple[int, int]] | None:
    """families.lua's per-thread (start, sent) of one run; None if it wrote none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    threads = [line.split() for line in text.splitlines() if line.strip()]
    return [(int(start), int(sent)) for start, sent in threads] or None


def families_read(order: Sequence[int], threads: Sequence[tuple[int, int]]) -> list[int]:
    """The families a run asked for: each thread's stretch of the sequence, the threads'
    requests taken in turn (exact for one wrk thread, bench/run's default)."""
    result = []
    for step in range(max(sent for _start, sent in threads)):
        for start, sent in threads:
            if step < sent:
                result.append(order[(start + step) % len(order)])
    return result


@dataclass(frozen=True, slots=True)
class FamiliesWorkload:
    """What bench/run needs to measure a target on the families: wrk's script and
    environment for each run, the first family's request (statements per request), and
    the writer that runs during each measurement."""

    families: Families
    concurrencies: tuple[int, ...]
    database_url: str
    today: date
    seed: int
    writes_per_second: float | None
    warmed: set[str] = dataclasses.field(default_factory=set)  # target labels
    replays: dict[str, CacheReplay] = dataclasses.field(default_factory=dict)

    def wrk_env(self, target: Target, *, concurrency: int, timed: bool) -> dict[str, str]:
        """The environment of bench/wrk/families.lua for one run of `target`."""
        peer = peer_of(target)
        part = 2 * self.concurrencies.index(concurrency) + (1 if timed else 0)
        positions = self._positions(target, concurrency=concurrency, timed=timed)
        positions.parent.mkdir(parents=True, exist_ok=True)
        positions.unlink(missing_ok=True)  # a run that writes none is not replayed
        return {
            "BENCH_FAMILIES_FILE": str(self.families.file(peer)),
            "BENCH_SEQUENCE_FILE": str(self.families.sequence),
            "BENCH_SEQUENCE_START": str(part * SEQUENCE_PART % SEQUENCE_LENGTH),
            "BENCH_POSITIONS_FILE": str(positions),
        }

    def _positions(self, target: Target, *, concurrency: int, timed: bool) -> Path:
        name = f"{target.label.replace(' ', '-')}-c{concurrency}-{'timed' if timed else 'warmup'}"
        return self.families.directory / RUNS_DIRECTORY / f"{name}.txt"

    async def warm(self, target: Target) -> None:
        """Before a target's first families run: every family's request once (steady
        state: the cache as an evening of random families leaves it); the cache's replay
        starts from it."""
        if target.label in self.warmed:
            return
        self.warmed.add(target.label)
        requests = requests_of(self.families, peer_of(target))
        started = time.monotonic()
        answered = await warm_pass(target, requests)
        _progress(target, len(answered), len(requests), started)
        if replays_cache(target):
            sizes = {n: entry_bytes(size, self.families.families[n - 1]) for n, size in answered}
            replay = self.replays[target.label] = CacheReplay(sizes)
            for number, _size in answered:
                replay.read(number)

    def first_misses(self, target: Target, concurrency: int) -> int | None:
        """After a measurement: the timed run's requests of a family not in the replayed
        cache (first-time misses); None for a target without a replay or a run without
        positions. Replays the warm-up run, the timed run and the statement count's
        requests (the first family), so the next run starts from where this one ended."""
        replay = self.replays.get(target.label)
        if replay is None:
            return None
        runs = [
            read_positions(self._positions(target, concurrency=concurrency, timed=timed))
            for timed in (False, True)
        ]
        if runs[0] is None or runs[1] is None:
            del self.replays[target.label]  # lost track of what the cache holds
            return None
        order = _read_sequence(self.families.sequence)
        for family in families_read(order, runs[0]):
            replay.read(family)
        misses = sum(not replay.read(family) for family in families_read(order, runs[1]))
        replay.read(1)
        return misses

    def first_request(self, target: Target) -> Request:
        """The first family's request (sequential samples: statements per request)."""
        peer = peer_of(target)
        first = dataclasses.replace(self.families, families=self.families.families[:1])
        return requests_of(first, peer)[0]

    def start_writer(self) -> WriterProcess | None:
        """The teachers' writer, writing until stopped (None: --writes-per-second 0)."""
        if self.writes_per_second == 0:
            return None
        return start_writer(
            self.database_url,
            str(self.families.students),
            today=self.today,
            rate=self.writes_per_second,
            seed=self.seed,
            cwd=str(PROJECT_ROOT),
        )
