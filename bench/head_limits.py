"""The per-request cost of bounding request heads: uvicorn's httptools protocol against
authgate's ``BoundedHeadProtocol`` (src/authgate/cli/http_protocol.py), in-process.

Each round feeds the same keep-alive ``GET`` heads, one by one, to a protocol on a fake
transport with a trivial ASGI app, and reports microseconds per request; the rounds
alternate the two protocols. Nothing here fails on a threshold.

    .venv/bin/python bench/head_limits.py --rounds 7 --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from authgate.cli.http_protocol import bounded_head_protocol

HEAD = b"GET /api/ping HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"pong"})


class Transport(asyncio.Transport):
    """Accepts writes and discards them."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def microseconds_per_request(make: Callable[..., Any], requests: int) -> float:
    config = Config(app=hello, log_level="warning", access_log=False)
    config.load()
    state = ServerState()
    protocol = make(config=config, server_state=state, app_state={})
    protocol.connection_made(Transport())
    started = time.perf_counter()
    for _ in range(requests):
        protocol.data_received(HEAD)
        await asyncio.gather(*state.tasks)  # the request's ASGI task, to the response
    elapsed = time.perf_counter() - started
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


async def measure(rounds: int, requests: int) -> None:
    bounded = bounded_head_protocol(max_head_bytes=32 * 1024, head_timeout=10.0)
    results: dict[str, list[float]] = {"httptools": [], "bounded head": []}
    for _ in range(rounds):
        results["httptools"].append(await microseconds_per_request(HttpToolsProtocol, requests))
        results["bounded head"].append(await microseconds_per_request(bounded, requests))
    for name, values in results.items():
        runs = ", ".join(f"{value:.2f}" for value in values)
        print(f"{name:13s} median {statistics.median(values):6.2f} us/request  ({runs})")
    ratio = statistics.median(results["bounded head"]) / statistics.median(results["httptools"])
    print(f"ratio bounded/httptools: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    asyncio.run(measure(args.rounds, args.requests))


if __name__ == "__main__":
    main()
