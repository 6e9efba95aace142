"""P6: API key verification with 1,000,000 keys in PostgreSQL.

Loads ``--keys`` keys into a scratch PostgreSQL database: real key strings
(``keys.generate_key``) and their real stored digests (``keys.key_digest`` under a pepper
made by ``keystore.create_pepper_file``), generated in a worker process and written with
COPY in batches, spread over 100 owners. Then, in a fresh process (so the loader's memory
does not count), it starts the real services (``create_app`` on that database, as
``authgate serve`` builds them) and measures:

* cache-miss verification: ``key_auth.authenticate`` of keys never verified before in
  this process, one at a time: a database lookup, the keyed hash, the allow-list,
  expiry and owner checks (target p99 <= 2 ms);
* the process's resident memory (VmRSS) before, and after ``--cached`` distinct keys
  were verified and sit in the key cache (target <= 200 MB with 100,000). The default
  cache bound (``AUTHGATE_API_KEY_CACHE_SIZE``, 10,000) is raised to ``--cached`` and the
  record lifetime to its maximum (3600 s), so that every verified key stays cached.

Owners are verified once before measuring, so the owner's state is cached (it is, in a
running server, for all but the first request of each owner per minute).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from authgate.app import create_app
from authgate.security import keys
from authgate.security.principal import join_authorities
from authgate.services.api_keys import KeyPolicy
from authgate.settings import Settings
from authgate.storage import keystore
from authgate.storage.api_key_repository import verification_row
from figures import exit_on_sigterm, percentile, print_details, row
from report import Row, add_output_arguments, print_rows, write_json
from scratch_db import asyncpg_dsn, scratch_database

OWNERS = 100
BATCH = 50_000
CLIENT_IP = "10.1.2.3"
ALLOWED_NETWORKS = "10.0.0.0/8,192.168.0.0/16"
SCOPES = join_authorities(frozenset({"read", "write"}))
# Every NOT NULL column without a server default: the models' defaults (the public
# UUID) are Python's, which COPY does not run.
COLUMNS = (
    "public_id",
    "user_id",
    "name",
    "key_id",
    "key_tail",
    "secret_hash",
    "allowed_networks",
    "scopes",
    "created_at",
    "generated_at",
    "updated_at",
    "expires_at",
)
DEFAULT_CACHE_SIZE: int = KeyPolicy.model_fields["cache_size"].default
MISS_P99_TARGET_MS = 2.0
RSS_TARGET_MB = 200.0


@dataclass(frozen=True)
class Plan:
    keys: int
    samples: int
    cached: int  # distinct keys verified in all (owners' first keys included)
    stride: int  # every stride-th key (from OWNERS on) is kept for the measurements


@dataclass(frozen=True)
class LoadFigures:
    seconds: float
    analyze_seconds: float
    table_mb: float


# -- loading -------------------------------------------------------------------------------


def generate_batch(
    task: tuple[int, int, bytes, tuple[int, ...], int, datetime],
) -> tuple[list[tuple[Any, ...]], list[str], list[str]]:
    """Rows of keys ``start .. start+count`` (run in a worker process), the plaintexts
    kept for verification, and the first key of each owner."""
    start, count, pepper, owners, stride, now = task
    expires = now + timedelta(days=365)
    rows: list[tuple[Any, ...]] = []
    kept: list[str] = []
    first_of_owner: list[str] = []
    for index in range(start, start + count):
        plaintext = keys.generate_key().plaintext
        rows.append(
            (
                str(uuid.uuid4()),
                owners[index % len(owners)],
                f"bench-{index}",
                keys.key_id_of(plaintext),
                plaintext[-4:],
                keys.key_digest(pepper, plaintext),
                ALLOWED_NETWORKS,
                SCOPES,
                now,
                now,
                now,
                expires,
            )
        )
        if index < len(owners):
            first_of_owner.append(plaintext)
        elif index % stride == 0:
            kept.append(plaintext)
    return rows, kept, first_of_owner


async def insert_owners(connection: asyncpg.Connection, now: datetime) -> tuple[int, ...]:
    # The password hash is never checked: these users only own keys.
    records = await connection.fetch(
        "INSERT INTO users (public_id, login, email, lang_key, activated, authorities,"
        " password_hash, created_at, updated_at)"
        " SELECT gen_random_uuid()::text, 'owner' || n, 'owner' || n || '@example.com', 'en',"
        " true, 'ROLE_USER', '!unusable', $1, $1 FROM generate_series(1, $2) AS n"
        " RETURNING id",
        now,
        OWNERS,
    )
    return tuple(record["id"] for record in records)


async def load_keys(
    url: str, plan: Plan, pepper: bytes, workers: int
) -> tuple[LoadFigures, list[str], list[str]]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        now = datetime.now(UTC)
        owners = await insert_owners(connection, now)
        tasks = [
            (start, min(BATCH, plan.keys - start), pepper, owners, plan.stride, now)
            for start in range(0, plan.keys, BATCH)
        ]
        kept: list[str] = []
        first_of_owner: list[str] = []
        loaded = 0
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for rows, batch_kept, batch_first in pool.imap(generate_batch, tasks):
                await connection.copy_records_to_table("api_keys", records=rows, columns=COLUMNS)
                kept += batch_kept
                first_of_owner += batch_first
                loaded += len(rows)
                if loaded % (BATCH * 4) == 0 or loaded == plan.keys:
                    elapsed = time.perf_counter() - started
                    print(f"    {loaded:>9,} keys   {elapsed:6.1f} s", flush=True)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        await connection.execute("ANALYZE api_keys")
        analyze_seconds = time.perf_counter() - started
        size = await connection.fetchval("SELECT pg_total_relation_size('api_keys')")
    finally:
        await connection.close()
    figures = LoadFigures(seconds, analyze_seconds, size / 2**20)
    return figures, kept, first_of_owner


# -- measuring (in a fresh process) --------------------------------------------------------


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(
    url: str, pepper_file: str, data_dir: str, keys_file: str, plan: Plan
) -> dict[str, Any]:
    return asyncio.run(_measure(url, Path(pepper_file), Path(data_dir), Path(keys_file), plan))


async def _measure(
    url: str, pepper_file: Path, data_dir: Path, keys_file: Path, plan: Plan
) -> dict[str, Any]:
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        api_key_pepper_file=pepper_file,
        api_key_cache_size=max(DEFAULT_CACHE_SIZE, plan.cached),
        api_key_cache_ttl_seconds=3600,
        access_log=False,
        log_level="WARNING",
        argon2_memory_kib=8,
        argon2_time_cost=1,
    )
    app = create_app(settings, freeze_gc_after_start=True)
    latencies = array("d", bytes(8 * plan.samples))
    lookups = array("d", bytes(8 * plan.samples))
    async with app.router.lifespan_context(app):
        services = app.state.services
        client = services.client_ips.resolve(CLIENT_IP)
        await asyncio.sleep(2)  # start-up work (first key count of the gauges) settles
        with keys_file.open() as lines:
            for _ in range(OWNERS):  # caches each owner's state (and opens the pool)
                await services.key_auth.authenticate(next(lines).rstrip("\n"), client)
            gc.collect()
            rss_before = vm_rss_mb()
            cached_before = services.key_auth.cache_sizes()["api_keys"]
            for index in range(plan.samples):
                credential = next(lines).rstrip("\n")
                started = time.perf_counter()
                await services.key_auth.authenticate(credential, client)
                latencies[index] = time.perf_counter() - started
            for index in range(plan.samples):  # other keys, looked up but not verified
                key_id = keys.key_id_of(next(lines))
                started = time.perf_counter()
                async with services.db.connection() as connection:
                    await verification_row(connection, key_id)
                lookups[index] = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(plan.cached - OWNERS - plan.samples):
                await services.key_auth.authenticate(next(lines).rstrip("\n"), client)
            fill_seconds = time.perf_counter() - started
        gc.collect()
        rss_after = vm_rss_mb()
        cached_after = services.key_auth.cache_sizes()["api_keys"]
    return {
        "latencies_ms": [value * 1000 for value in latencies],
        "lookups_ms": [value * 1000 for value in lookups],
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "cached_before": cached_before,
        "cached_after": cached_after,
        "cache_bound": settings.api_keys.cache_size,
        "fill_seconds": fill_seconds,
        "fill_count": plan.cached - OWNERS - plan.samples,
    }


# -- the benchmark -------------------------------------------------------------------------


def plan_from(arguments: argparse.Namespace) -> Plan:
    total = arguments.keys
    # Every key verified or looked up is a different one: samples + cached <= keys.
    samples = min(arguments.samples, (total - OWNERS) // 2)
    cached = min(arguments.cached, total - samples)
    samples = min(samples, cached - OWNERS)
    if samples < 1:
        sys.exit(f"--keys and --cached must exceed the {OWNERS} owners' first keys")
    # Kept keys: the cached ones, and as many again to time database lookups alone.
    stride = max(1, (total - OWNERS) // (cached - OWNERS + samples))
    return Plan(keys=total, samples=samples, cached=cached, stride=stride)


def run(plan: Plan, workers: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="authgate-bench-keys-") as directory:
        pepper_file = Path(directory) / "api-key-pepper"
        keystore.create_pepper_file(pepper_file)
        pepper = keystore.load_or_create_pepper(None, pepper_file, pepper_file)
        with scratch_database("keys") as url:
            print(f"  loading {plan.keys:,} keys ({OWNERS} owners, COPY in batches of {BATCH:,})")
            load, kept, first_of_owner = asyncio.run(load_keys(url, plan, pepper, workers))
            random.shuffle(kept)
            keys_file = Path(directory) / "keys.txt"
            with keys_file.open("w") as out:
                out.writelines(f"{plaintext}\n" for plaintext in [*first_of_owner, *kept])
            del kept, first_of_owner
            print(f"  verifying {plan.cached:,} keys never seen before, in a fresh process")
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                args = (url, str(pepper_file), str(Path(directory) / "data"), str(keys_file))
                result = pool.submit(measure, *args, plan).result(timeout=3600)
    return figures(plan, load, result)


def figures(plan: Plan, load: LoadFigures, result: dict[str, Any]) -> list[Row]:
    latencies = result["latencies_ms"]
    cached_delta = result["cached_after"] - result["cached_before"]
    rss_delta = result["rss_after_mb"] - result["rss_before_mb"]
    per_key_kb = rss_delta * 1024 / cached_delta if cached_delta else 0.0
    bound = result["cache_bound"]
    bound_note = (
        f"AUTHGATE_API_KEY_CACHE_SIZE raised from the default {DEFAULT_CACHE_SIZE:,} to {bound:,}"
        if bound != DEFAULT_CACHE_SIZE
        else f"cache bound {bound:,} (default)"
    )
    fill_ms = result["fill_seconds"] * 1000 / max(1, result["fill_count"])
    table = f"{plan.keys:,} keys in PostgreSQL"
    return [
        row(
            "P6a",
            "cache-miss key verification, p50",
            statistics.median(latencies),
            "ms",
            detail=f"{len(latencies):,} keys never verified before, one at a time; {table}",
        ),
        row(
            "P6b",
            "cache-miss key verification, p99",
            percentile(latencies, 0.99),
            "ms",
            maximum=MISS_P99_TARGET_MS,
            detail=(
                f"max {max(latencies):.2f} ms; mean of the next {result['fill_count']:,} "
                f"misses {fill_ms:.3f} ms"
            ),
        ),
        row(
            "P6c",
            f"process RSS with {result['cached_after']:,} keys cached",
            result["rss_after_mb"],
            "MB",
            maximum=RSS_TARGET_MB if result["cached_after"] >= 100_000 else None,
            detail=f"{bound_note}, record lifetime 3600 s; VmRSS after gc.collect()",
        ),
        row(
            "P6d",
            f"process RSS before caching ({result['cached_before']:,} keys cached)",
            result["rss_before_mb"],
            "MB",
            detail="services started on the same database, owners' states cached",
        ),
        row(
            "P6e",
            "RSS per cached key",
            per_key_kb,
            "KB",
            detail=f"({result['rss_after_mb']:.1f} - {result['rss_before_mb']:.1f}) MB "
            f"/ {cached_delta:,} keys",
        ),
        row(
            "P6f",
            f"bulk load of {plan.keys:,} keys (generate + hash + COPY)",
            load.seconds,
            "s",
            detail=f"{plan.keys / load.seconds:,.0f} keys/s; ANALYZE {load.analyze_seconds:.1f} s;"
            f" api_keys with indexes {load.table_mb:,.0f} MB",
        ),
        row(
            "P6g",
            "database lookup alone (connection + SELECT by key id), p50",
            statistics.median(result["lookups_ms"]),
            "ms",
            detail=f"p99 {percentile(result['lookups_ms'], 0.99):.2f} ms over "
            f"{len(result['lookups_ms']):,} other keys: the share of P6a/P6b spent in the query",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the database")
    parser.add_argument("--samples", type=int, default=5_000, help="timed cache misses")
    parser.add_argument("--cached", type=int, default=100_000, help="keys verified and cached")
    parser.add_argument(
        "--load-workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="processes generating keys while the main one COPYs",
    )
    add_output_arguments(parser)  # --quick: 20,000 keys, 1,000 samples, 10,000 cached
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.keys, arguments.samples, arguments.cached = 20_000, 1_000, 10_000
    exit_on_sigterm()
    plan = plan_from(arguments)
    print("Many API keys (P6): cache misses and cache memory, PostgreSQL")
    rows = run(plan, arguments.load_workers)
    print_rows(rows)
    print_details(rows)
    write_json(arguments.json_out, rows)


if __name__ == "__main__":
    main()
