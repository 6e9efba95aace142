"""The stop-aware wait of the background loops."""

from __future__ import annotations

import asyncio

from authgate.services.pause import pause


async def test_a_pause_lasts_its_seconds_when_nothing_stops() -> None:
    """Without a stop, it waits the whole interval and says "go on"."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await pause(asyncio.Event(), 0.05) is False
    assert loop.time() - started >= 0.04


async def test_a_stop_during_a_pause_ends_it_at_once() -> None:
    """A stop set while it waits ends the wait long before the interval."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert await asyncio.wait_for(pause(stop, 60), timeout=5) is True


async def test_a_pause_after_the_stop_does_not_wait() -> None:
    """A loop that reaches its pause when the process is stopping ends at once."""
    stop = asyncio.Event()
    stop.set()
    assert await asyncio.wait_for(pause(stop, 60), timeout=1) is True
