"""Caches whose memory any client can grow are bounded in bytes, not only in entries.

`BoundedCache` is a least-recently-used map that counts what each entry costs (its
key and value, as the caller estimates them) and evicts until both the count and the
bytes are within bounds; an entry larger than `max_entry_bytes` is not kept at all.
`BoundedMemo` is `functools.lru_cache` for functions of one text: results are kept
under a fixed-size digest of the text (never the text itself) with the size the
caller's `weigh` gives them, or not at all when `weigh` says None.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DIGEST_BYTES: Final = 32
# What an entry costs besides its value: the key digest, the map's slot and node, the
# bookkeeping objects (an upper estimate, measured with tracemalloc).
ENTRY_OVERHEAD: Final = 512


def digest(*parts: str | bytes) -> bytes:
    """A fixed-size, collision-resistant digest of texts (BLAKE2b, length-prefixed)."""
    hasher = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.digest()


class BoundedCache(Generic[K, V]):
    """Least recently used out, bounded by entries and by (estimated) bytes."""

    def __init__(
        self, max_entries: int, max_bytes: int, max_entry_bytes: int | None = None
    ) -> None:
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes if max_entry_bytes is None else max_entry_bytes
        self.bytes = 0

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, size: int) -> bool:
        """Keep `value` (replacing the key's old one); False when it is too big to keep."""
        self.discard(key)
        if size > self.max_entry_bytes:
            return False
        self._entries[key] = (value, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted_size) = self._entries.popitem(last=False)
            self.bytes -= evicted_size
        return True

    def discard(self, key: K) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class CacheInfo(NamedTuple):
    """As `functools.lru_cache`'s, plus the bytes held."""

    hits: int
    misses: int
    maxsize: int
    currsize: int
    bytes: int


class BoundedMemo(Generic[V]):
    """`function(text)` once per distinct text, kept under the text's digest."""

    def __init__(
        self,
        function: Callable[[str], V],
        weigh: Callable[[str, V], int | None],
        cache: BoundedCache[bytes, V],
    ) -> None:
        self._function = function
        self._weigh = weigh
        self._cache = cache
        self.hits = 0
        self.misses = 0

    def __call__(self, text: str) -> V:
        key = digest(text)
        found = self._cache.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        value = self._function(text)
        size = self._weigh(text, value)
        if size is not None:
            self._cache.put(key, value, size + ENTRY_OVERHEAD)
        return value

    def cache_info(self) -> CacheInfo:
        cache = self._cache
        return CacheInfo(self.hits, self.misses, cache.max_entries, len(cache), cache.bytes)

    def cache_clear(self) -> None:
        self._cache.clear()
