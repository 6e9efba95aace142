"""The bounded caches of the hot path: entries end at their deadline, the oldest goes
first when full, and what expired is still there for an outage (``stale``)."""

from __future__ import annotations

from typing import Any

import pytest

from authgate.services.expiring_cache import ExpiringCache, SelfExpiringCache


class Entry:
    __slots__ = ("deadline", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.deadline = 0.0


CACHES = [ExpiringCache, SelfExpiringCache]


@pytest.mark.parametrize("kind", CACHES)
def test_an_entry_answers_until_its_deadline_then_only_as_stale(kind: Any) -> None:
    cache = kind(10)
    entry = Entry("a")
    cache.put("a", entry, expires_at=100.0)

    assert cache.get("a", now=99.9) is entry
    assert cache.get("a", now=100.0) is None
    assert cache.stale("a") is entry
    assert cache.get("b", now=0.0) is None
    assert cache.stale("b") is None
    assert (cache.hits, cache.misses) == (1, 2)
    assert cache.hit_ratio_percent() == 33


@pytest.mark.parametrize("kind", CACHES)
def test_when_full_the_oldest_entry_goes_first(kind: Any) -> None:
    cache = kind(2)
    first, second, third = Entry("1"), Entry("2"), Entry("3")
    cache.put(1, first, expires_at=50.0)
    cache.put(2, second, expires_at=50.0)
    cache.put(1, first, expires_at=60.0)  # a replacement takes no room
    assert len(cache) == 2

    cache.put(3, third, expires_at=50.0)

    assert len(cache) == 2
    assert cache.stale(1) is None
    assert cache.get(2, now=0.0) is second
    assert cache.get(3, now=0.0) is third


@pytest.mark.parametrize("kind", CACHES)
def test_a_cache_of_size_zero_keeps_nothing(kind: Any) -> None:
    cache = kind(0)
    cache.put("a", Entry("a"), expires_at=100.0)
    assert len(cache) == 0
    assert cache.get("a", now=0.0) is None


@pytest.mark.parametrize("kind", CACHES)
def test_discard_and_clear(kind: Any) -> None:
    cache = kind(10)
    for name in "abc":
        cache.put(name, Entry(name), expires_at=100.0)
    cache.discard("a")
    cache.discard("missing")
    assert cache.stale("a") is None
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_the_self_expiring_cache_keeps_the_deadline_on_the_value() -> None:
    """One object an entry: the deadline given to ``put`` is the value's own, and a new
    ``put`` of the same value moves it."""
    cache: SelfExpiringCache[str, Entry] = SelfExpiringCache(10)
    entry = Entry("a")
    cache.put("a", entry, expires_at=100.0)
    assert entry.deadline == 100.0
    cache.put("a", entry, expires_at=200.0)
    assert cache.get("a", now=150.0) is entry
