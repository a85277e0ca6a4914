"""A cache of whole GraphQL responses, validated on every request by one cheap statement.

A family's diary changes a few times a day and is read far more often (mornings,
evenings, the day a quarter closes). A cached response is served only when the source
database proves nothing it shows has changed: before executing a query, the endpoint
reads one version token for the viewer's students (`gateway.data.get_versions`, over the
change tracking of `fixtures/school_db.sql`: any committed write to a mark, an
attendance record, a lesson, a topic, homework, a student or any reference table gives
the token a new value). A stored response is returned only if its token is the current
one; the token is read *before* the data, so a write that lands in between only makes
the stored response newer than its token, never older.

What is cached, and under which key:
- only queries of family viewers (parents, students), whose every root field reads the
  journal through the scope-checked loaders (`CACHEABLE_ROOT_FIELDS`), and only answers
  without errors;
- the key holds the viewer as loaded for this request (account, role, name and the whole
  scope: a removed parent-child link changes the key), the query text, the variables,
  the operation name, the extensions and the day the gateway takes as today.

A hit still records the access audit with the students the original execution read
(kept with the response), exactly as a miss does. Bounded by entries and by bytes,
least recently used out. One cache per serving process.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import orjson
from graphql import FieldNode, OperationDefinitionNode, OperationType

from auth.viewer import Viewer

ENV: Final = "SCHOOL_GATEWAY_RESPONSE_CACHE"
MAX_ENTRIES: Final = 2048
MAX_BYTES: Final = 64 << 20
MAX_BODY_BYTES: Final = 512 << 10

# Root fields whose answers depend only on the viewer and on journal data read through
# the scope-checked student loaders. A root field not listed here is never cached.
CACHEABLE_ROOT_FIELDS: Final = frozenset({"viewer", "myChildren", "student", "__typename"})


def enabled_from_env(env: dict[str, str] | None = None) -> bool:
    """On unless SCHOOL_GATEWAY_RESPONSE_CACHE is 0/false/off/no."""
    value = (os.environ if env is None else env).get(ENV, "1").strip().lower()
    if value in ("1", "true", "on", "yes", ""):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{ENV} must be 1 or 0, not {value!r}")


def is_cacheable(viewer: Viewer | None, operation: OperationDefinitionNode) -> bool:
    """A query of a family viewer whose root fields are all journal reads."""
    if viewer is None or not viewer.is_family or operation.operation is not OperationType.QUERY:
        return False
    return all(
        isinstance(selection, FieldNode) and selection.name.value in CACHEABLE_ROOT_FIELDS
        for selection in operation.selection_set.selections
    )


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """An answer as sent, the versions it was read at, and whose data it read."""

    versions: str
    body: bytes
    accessed_student_ids: tuple[int, ...]


class ResponseCache:
    """Responses by key, least recently used out, bounded by entries and bytes."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: OrderedDict[Hashable, CachedResponse] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        viewer: Viewer,
        *,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        extensions: dict[str, Any] | None,
        today: date,
    ) -> Hashable:
        """Everything the answer depends on besides the journal data."""
        return (
            viewer,
            query,
            None if variables is None else orjson.dumps(variables, option=orjson.OPT_SORT_KEYS),
            operation_name,
            None if extensions is None else orjson.dumps(extensions, option=orjson.OPT_SORT_KEYS),
            today,
        )

    def get(self, key: Hashable, versions: str) -> CachedResponse | None:
        """The stored response if it was read at exactly these versions."""
        entry = self._entries.get(key)
        if entry is None or entry.versions != versions:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: Hashable, entry: CachedResponse) -> None:
        if len(entry.body) > MAX_BODY_BYTES:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    def __len__(self) -> int:
        return len(self._entries)
