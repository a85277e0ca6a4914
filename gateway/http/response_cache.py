"""A cache of whole GraphQL responses, validated on every request by one cheap statement.

A family's diary changes a few times a day and is read far more often (mornings,
evenings, the day a quarter closes). A cached response is served only when the source
database proves nothing it shows has changed: before executing a query, the endpoint
reads one version token for the viewer's students (`resolvers.diary.sql.get_versions`, over the
change tracking of `fixtures/school_db.sql`: any committed write to a mark, an
attendance record, a lesson, a topic, homework, a student or any reference table gives
the token a new value). A stored response is returned only if its token is the current
one; the token is read *before* the data, so a write that lands in between only makes
the stored response newer than its token, never older.

What is cached, and under which key:
- only queries of family viewers (parents, students), whose every root field reads the
  journal through the scope-checked loaders (declared on the field:
  `resolvers.common.fields.cacheable`), and only answers without errors;
- the key holds the viewer as loaded for this request (account, role, name and the whole
  scope: a removed parent-child link changes the key), the day the gateway takes as
  today, and one fixed-size digest of the query text, the operation name and the values
  of the variables the operation defines (a valid operation uses every variable it
  defines; graphql-core ignores the others, and nothing reads the request's
  `extensions`, so neither is part of the key: what a client adds there pins nothing).

A hit still records the access audit with the students the original execution read
(kept with the response), exactly as a miss does. Bounded by entries and by bytes (of
the bodies, plus an estimate of each key and entry), least recently used out. One
cache per serving process.

Speculation: the versions statement needs the viewer's scope, which the token's own
statement loads. For a bearer token seen before (`ScopeGuesses`) whose last viewer has
an answer cached for this very request, the versions of that viewer's scope are read at
the same time as the viewer (`Speculation`), on another pooled connection; they are
used only if the scope just loaded is exactly that one (otherwise the versions are read
again for the real scope). A hit then costs one round trip to the
database instead of two. The versions are still read before any data, so nothing
changes in what a hit may serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import asyncpg
import orjson
from graphql import (
    FieldNode,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
)

from auth.store.audit import AccessEvent, Recorder
from auth.viewer import Viewer
from gateway.core.bounded_cache import ENTRY_OVERHEAD, BoundedCache, digest
from gateway.core.outage import is_database_unavailable, statement_timeout_as_503
from resolvers.common.fields import is_cacheable_root
from resolvers.diary import sql as data

log = logging.getLogger(__name__)

MAX_GUESSES: Final = 4096
MAX_ENTRIES: Final = 2048
MAX_BYTES: Final = 64 << 20
MAX_BODY_BYTES: Final = 512 << 10
# A key's viewer and the entry's bookkeeping, besides the body (estimates, generous).
VIEWER_BYTES: Final = 1024
BYTES_PER_ID: Final = 64


def is_cacheable(
    viewer: Viewer | None, operation: OperationDefinitionNode, schema: GraphQLSchema
) -> bool:
    """A query of a family viewer whose root fields are all journal reads: declared
    cacheable in the schema (a root field not declared so is never cached)."""
    if viewer is None or not viewer.is_family or operation.operation is not OperationType.QUERY:
        return False
    root = schema.query_type
    return root is not None and all(
        _cacheable_root(root, selection) for selection in operation.selection_set.selections
    )


def _cacheable_root(root: GraphQLObjectType, selection: SelectionNode) -> bool:
    if not isinstance(selection, FieldNode):
        return False
    name = selection.name.value
    if name == "__typename":
        return True
    field = root.fields.get(name)
    return field is not None and is_cacheable_root(field)


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """An answer as sent, the versions it was read at, and whose data it read."""

    versions: str
    body: bytes
    accessed_student_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ResponseKey:
    """What a cached answer is stored under (`ResponseCache.key`): fixed size but for
    the viewer, which the server loaded."""

    viewer: Viewer
    request: bytes  # digest of the query text, operation name and variables
    today: date


class ResponseCache:
    """Responses by key, least recently used out, bounded by entries and bytes."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: BoundedCache[Hashable, CachedResponse] = BoundedCache(
            max_entries, max_bytes, max_entry_bytes=MAX_BODY_BYTES + ENTRY_OVERHEAD
        )
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        viewer: Viewer,
        *,
        query: str,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
        today: date,
    ) -> Hashable:
        """Everything the answer depends on besides the journal data: the viewer, today,
        and a digest of the text, the operation's name and its variables' values."""
        given = variables or {}
        names = (
            definition.variable.name.value for definition in operation.variable_definitions or ()
        )
        used = {name: given[name] for name in names if name in given}
        request = digest(
            query,
            operation.name.value if operation.name else "",
            orjson.dumps(used, option=orjson.OPT_SORT_KEYS),
        )
        return ResponseKey(viewer, request, today)

    def get(self, key: Hashable, versions: str) -> CachedResponse | None:
        """The stored response if it was read at exactly these versions."""
        entry = self._entries.get(key)
        if entry is None or entry.versions != versions:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def put(self, key: Hashable, entry: CachedResponse) -> None:
        self._entries.put(key, entry, _entry_bytes(key, entry))

    @property
    def bytes(self) -> int:
        """What the entries hold, as counted against `max_bytes`."""
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)


def _entry_bytes(key: Hashable, entry: CachedResponse) -> int:
    ids = len(entry.accessed_student_ids)
    if isinstance(key, ResponseKey):
        ids += len(key.viewer.student_ids) + len(key.viewer.school_ids)
    fixed = len(entry.versions) + VIEWER_BYTES + ENTRY_OVERHEAD
    return len(entry.body) + fixed + BYTES_PER_ID * ids


class ScopeGuesses:
    """The viewer each bearer token had on its last cacheable request (bounded)."""

    def __init__(self, size: int = MAX_GUESSES) -> None:
        # Keyed by a digest of the header: a client's padding pins nothing.
        self._viewers: OrderedDict[bytes, Viewer] = OrderedDict()
        self._size = size

    def get(self, authorization: str | None) -> Viewer | None:
        return None if authorization is None else self._viewers.get(digest(authorization))

    def speculate(
        self,
        authorization: str | None,
        cached: Callable[[Viewer], bool],
        pool: asyncpg.Pool,
    ) -> Speculation | None:
        """Start reading the versions of the token's last scope, if an answer for this
        request and that viewer is cached (nothing is read for anything else)."""
        guess = self.get(authorization)
        if guess is None or not cached(guess):
            return None
        scope = guess.student_ids
        return Speculation(scope, data.get_versions(pool, student_ids=sorted(scope)))

    def remember(self, authorization: str | None, viewer: Viewer | None) -> None:
        """Keep the token's viewer; None forgets it (its request was not cacheable)."""
        if authorization is None:
            return
        key = digest(authorization)
        if viewer is None:
            self._viewers.pop(key, None)
            return
        self._viewers[key] = viewer
        self._viewers.move_to_end(key)
        if len(self._viewers) > self._size:
            self._viewers.popitem(last=False)


class Speculation:
    """The versions of a guessed scope, being read while the viewer loads."""

    def __init__(self, scope: frozenset[int], versions: Awaitable[str]) -> None:
        self.scope = scope
        self._task: asyncio.Future[str] = asyncio.ensure_future(versions)

    async def versions_for(self, scope: frozenset[int]) -> str | None:
        """The versions if the guess was right (errors of the read propagate), else None."""
        if scope != self.scope:
            return None
        return await self._task

    async def settle(self) -> None:
        """Wait for the read (never left running); an unused read's failure is logged."""
        await asyncio.wait({self._task})
        error = None if self._task.cancelled() else self._task.exception()
        if error is not None and not is_database_unavailable(error):  # outages: gateway.core.outage
            log.warning("speculative versions read failed: %r", error)


async def current_versions(
    pool: asyncpg.Pool, viewer: Viewer, speculation: Speculation | None
) -> str:
    """The change token of the viewer's students: one statement, unless a right guess read
    it already. 503 TIMEOUT when the statement times out."""
    with statement_timeout_as_503():
        if speculation is not None:
            versions = await speculation.versions_for(viewer.student_ids)
            if versions is not None:
                return versions
        return await data.get_versions(pool, student_ids=sorted(viewer.student_ids))


def record_access(
    recorder: Recorder,
    viewer: Viewer,
    student_ids: tuple[int, ...],
    operation_name: str | None,
) -> None:
    """The access audit of an answer that read these students' data (nothing if none):
    a miss records the students its loaders read, a hit those its execution read."""
    if student_ids:
        recorder.access(
            AccessEvent(
                at=datetime.now(UTC),
                account_id=viewer.account_id,
                role=viewer.role.value,
                student_ids=student_ids,
                operation_name=operation_name,
            )
        )
