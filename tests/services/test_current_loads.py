"""``CurrentLoads``: one load per key at a time, and whether its result may be cached,
judged by when the load started (not by when a caller joined it)."""

from __future__ import annotations

import asyncio

from authgate.services.single_flight import CurrentLoads


async def test_concurrent_callers_share_one_load_and_may_cache_it() -> None:
    loads: CurrentLoads[str, int] = CurrentLoads()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 7

    results = await asyncio.gather(*(loads.run("k", load) for _ in range(5)))

    assert results == [(7, True)] * 5
    assert calls == 1


async def test_a_change_after_the_load_started_forbids_caching_for_every_caller() -> None:
    """Also for a caller that joined after the change: its read predates it."""
    loads: CurrentLoads[str, str] = CurrentLoads()
    reading, release = asyncio.Event(), asyncio.Event()

    async def load() -> str:
        reading.set()
        await release.wait()
        return "read before the change"

    first = asyncio.ensure_future(loads.run("k", load))
    await reading.wait()
    loads.invalidate()
    joined = asyncio.ensure_future(loads.run("k", load))
    await asyncio.sleep(0)
    release.set()

    assert await first == ("read before the change", False)
    assert await joined == ("read before the change", False)


async def test_a_change_before_the_load_started_does_not_forbid_caching() -> None:
    loads: CurrentLoads[str, int] = CurrentLoads()
    loads.invalidate()

    async def load() -> int:
        return 1

    assert await loads.run("k", load) == (1, True)
