"""The wait between two rounds of a background loop, cut short when the process stops."""

from __future__ import annotations

import asyncio
import contextlib


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or until ``stop`` is set if that comes first; returns whether it
    is set (the loop should end), so a stopping process never waits out an interval."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
