"""A bounded cache of DNS answers: least recently used out first, each entry gone when its TTL is over.

The size bound is what keeps a flood of distinct domains (a spammer's list, a mail merge of typos) from growing
memory: at `maxsize` entries the least recently used one goes, expired or not. Expired entries are dropped
when they are read. The clock is injectable so that tests can move time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """Counters of a `TtlLru`, for logs and tests."""

    size: int
    maxsize: int
    hits: int
    misses: int
    evictions: int  # entries pushed out by the size bound (not counting expiry)


class TtlLru(Generic[K, V]):
    """`maxsize` entries at most, each kept for its own TTL (seconds); not thread-safe (one event loop owns it)."""

    def __init__(self, maxsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be 0 or more")
        self.maxsize = maxsize
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._hits = self._misses = self._evictions = 0

    def get(self, key: K) -> V | None:
        """The value if it is there and not expired (it becomes the most recently used), else None."""
        entry = self._entries.get(key)
        if entry is not None:
            expires, value = entry
            if expires > self._clock():
                self._entries.move_to_end(key)
                self._hits += 1
                return value
            del self._entries[key]
        self._misses += 1
        return None

    def put(self, key: K, value: V, ttl: float) -> None:
        """Keep `value` for `ttl` seconds; a TTL of 0 or less keeps nothing."""
        if ttl <= 0 or self.maxsize == 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
            self._evictions += 1

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def info(self) -> CacheInfo:
        return CacheInfo(len(self._entries), self.maxsize, self._hits, self._misses, self._evictions)
