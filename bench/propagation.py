"""P7: how long a key revoked on one node stays usable on the others (target p99 <= 1 s).

Starts three ``authgate serve`` nodes (one worker each, default settings otherwise) on a
scratch PostgreSQL database and a private ``redis-server``, as a cluster. For each
trial: a key is verified on every node (so each has it cached), revoked on node A
(``DELETE /api/api-keys/{id}``), and nodes B and C are polled (``GET
/api/authenticate`` with the key, every ~2 ms plus the request's own time) until they
refuse it. The delay counts from just before the revocation is sent, so it includes
that request's own time. One trial gives two delays (B and C).

Then Redis is killed (SIGKILL, without warning) and the trials are repeated: the nodes
fall back to polling the database's change feed (every 0.25 s by default).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import httpx2

from cluster_harness import ADMIN_PASSWORD, AuthgateNode, RedisServer, cluster
from figures import exit_on_sigterm, percentile, print_details, row
from report import Row, add_output_arguments, print_rows, write_json
from scratch_db import scratch_database

TARGET_MS = 1000.0
GIVE_UP_S = 5.0
POLL_PAUSE_S = 0.002


class Node:
    """A keep-alive client for one node (one worker: every request reaches it)."""

    def __init__(self, server: AuthgateNode) -> None:
        self.name = server.name
        self.client = httpx2.Client(base_url=server.base_url, timeout=10.0)

    def whoami(self, credential: str) -> int:
        headers = {"Authorization": f"Bearer {credential}"}
        return self.client.get("/api/authenticate", headers=headers).status_code

    def close(self) -> None:
        self.client.close()


@dataclass
class Phase:
    delays_s: list[float]
    revoke_s: list[float]  # round trip of the revoking request itself
    gave_up: int  # delays that reached GIVE_UP_S (counted as GIVE_UP_S)
    first_delays_s: list[float]  # of the phase's first trial


def admin_token(node: Node) -> str:
    response = node.client.post(
        "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    response.raise_for_status()
    token: str = response.json()["id_token"]
    return token


def create_key(node: Node, token: str, name: str) -> dict[str, Any]:
    response = node.client.post(
        "/api/api-keys",
        json={
            "name": name,
            "allowedIp": ["127.0.0.1"],
            "expiresAt": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code != 201:
        raise RuntimeError(f"creating a key failed: {response.status_code} {response.text}")
    created: dict[str, Any] = response.json()
    return created


def refused_after(node: Node, credential: str, since: float) -> float:
    """Seconds from ``since`` until ``node`` refuses ``credential`` (at most GIVE_UP_S)."""
    while True:
        status = node.whoami(credential)
        now = time.monotonic()
        if status in (401, 403):
            return now - since
        if status != 200:
            raise RuntimeError(f"unexpected status {status} from node {node.name}")
        if now - since >= GIVE_UP_S:
            return GIVE_UP_S
        time.sleep(POLL_PAUSE_S)


def run_phase(
    a: Node, others: list[Node], token: str, keys: list[dict[str, Any]], pool: ThreadPoolExecutor
) -> Phase:
    phase = Phase(delays_s=[], revoke_s=[], gave_up=0, first_delays_s=[])
    headers = {"Authorization": f"Bearer {token}"}
    for trial, key in enumerate(keys):
        for node in (a, *others):
            status = node.whoami(key["key"])
            if status != 200:
                raise RuntimeError(f"node {node.name} refused a fresh key: {status}")
        # Trials should not fall into step with the nodes' 0.25 s polling.
        time.sleep(random.uniform(0.0, 0.05))  # noqa: S311 - jitter, not a secret
        started = time.monotonic()
        response = a.client.delete(f"/api/api-keys/{key['id']}", headers=headers)
        phase.revoke_s.append(time.monotonic() - started)
        if not response.is_success:
            raise RuntimeError(f"revoking failed: {response.status_code} {response.text}")
        delays = list(pool.map(refused_after, others, repeat(key["key"]), repeat(started)))
        phase.delays_s += delays
        phase.gave_up += sum(delay >= GIVE_UP_S for delay in delays)
        if trial == 0:
            phase.first_delays_s = delays
    return phase


def phase_rows(ids: tuple[str, str, str], label: str, phase: Phase, trials: int) -> list[Row]:
    delays_ms = [delay * 1000 for delay in phase.delays_s]
    revoke_ms = [seconds * 1000 for seconds in phase.revoke_s]
    gave_up = f"; {phase.gave_up} still accepted after {GIVE_UP_S:g} s" if phase.gave_up else ""
    first = ", ".join(f"{delay * 1000:.0f}" for delay in phase.first_delays_s)
    return [
        row(
            ids[0],
            f"revocation propagation, {label}, p50",
            statistics.median(delays_ms),
            "ms",
            detail=f"{len(delays_ms)} delays ({trials} revocations on node A x nodes B, C)",
        ),
        row(
            ids[1],
            f"revocation propagation, {label}, p99",
            percentile(delays_ms, 0.99),
            "ms",
            maximum=TARGET_MS,
            detail=f"revoking request itself: p50 {statistics.median(revoke_ms):.1f} ms,"
            f" p99 {percentile(revoke_ms, 0.99):.1f} ms{gave_up}",
        ),
        row(
            ids[2],
            f"revocation propagation, {label}, max",
            max(delays_ms),
            "ms",
            detail=f"first revocation of the phase: {first} ms",
        ),
    ]


def measure(trials_up: int, trials_down: int) -> list[Row]:
    with (
        tempfile.TemporaryDirectory(prefix="authgate-bench-cluster-") as directory,
        scratch_database("propagation") as database_url,
    ):
        workdir = Path(directory)
        redis = RedisServer(workdir / "redis")
        try:
            environment = {"AUTHGATE_KEY_IP_MAX_FAILURES": "100000"}  # refusals on purpose
            with cluster(
                workdir, database_url=database_url, redis_url=redis.url, extra_env=environment
            ) as servers:
                print(f"  3 nodes up ({', '.join(s.base_url for s in servers)}), Redis {redis.url}")
                a, b, c = (Node(server) for server in servers)
                try:
                    token = admin_token(a)
                    keys = [create_key(a, token, f"p7-{i}") for i in range(trials_up + trials_down)]
                    with ThreadPoolExecutor(max_workers=2) as pool:
                        print(f"  {trials_up} revocations with Redis up", flush=True)
                        up = run_phase(a, [b, c], token, keys[:trials_up], pool)
                        redis.kill()
                        print(f"  Redis killed; {trials_down} revocations without it", flush=True)
                        down = run_phase(a, [b, c], token, keys[trials_up:], pool)
                    alive = [server.name for server in servers if server.running]
                finally:
                    for node in (a, b, c):
                        node.close()
        finally:
            redis.stop()
    print(f"  nodes still running at the end: {', '.join(alive) or 'none'}")
    return [
        *phase_rows(("P7a", "P7b", "P7c"), "Redis up", up, trials_up),
        *phase_rows(("P7d", "P7e", "P7f"), "Redis killed", down, trials_down),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=100, help="revocations with Redis up")
    parser.add_argument(
        "--samples-redis-down",
        type=int,
        help="revocations after Redis is killed (default: half of --samples)",
    )
    add_output_arguments(parser)  # --quick: 20 revocations, then 10
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.samples, arguments.samples_redis_down = 20, 10
    trials_down = arguments.samples_redis_down or max(1, arguments.samples // 2)
    exit_on_sigterm()
    print("Revocation propagation across 3 nodes (P7), PostgreSQL + Redis")
    rows = measure(arguments.samples, trials_down)
    print_rows(rows)
    print_details(rows)
    write_json(arguments.json_out, rows)


if __name__ == "__main__":
    main()
