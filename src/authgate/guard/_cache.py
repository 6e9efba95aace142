"""A bounded in-memory map whose entries carry their own deadline.

The same idea as authgate's server-side cache (which this package may not import):
one clock reading per request, insertion-order eviction when full, so a flood of new
credentials can never grow memory past the bound. Used from the event loop only.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["ExpiringCache"]

K = TypeVar("K")
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """At most ``max_entries`` entries; each expires at the deadline it was stored with."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K, *, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V, *, expires_at: float) -> None:
        if self._max_entries <= 0:
            return
        if key not in self._entries and len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (expires_at, value)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
