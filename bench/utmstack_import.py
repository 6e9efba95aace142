"""``authgate import utmstack`` at scale, and the cache-miss latency of legacy keys.

In a scratch PostgreSQL database (``scratch_db``), with the real services (as
``authgate import utmstack`` builds them):

* import ``--users`` users (10,000) and ``--keys`` legacy keys (100,000) from an
  in-memory UTMStack export (the same rows ``--from-file`` reads; one bcrypt hash shared
  by every user, since the import stores hashes without checking them), then import it
  again (the idempotent no-op run: every row read, compared, nothing written);
* cache-miss verification of legacy keys: ``key_auth.authenticate`` of keys never
  verified before in this process, one at a time (a lookup by digest through the unique
  index, then the same checks as an ``agk_`` key), beside ``agk_`` keys' target
  (p99 <= 2 ms, P6). The owners are verified once first, so their state is cached.

Run: ``.venv/bin/python bench/utmstack_import.py [--users N] [--keys N] [--samples N]``.
The issue's figure is with 1,000,000 keys in PostgreSQL: ``--keys 1000000`` (minutes of
loading; the B-tree is one level deeper than with 100,000 keys).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import bcrypt

from authgate.app import ensure_schema
from authgate.container import build_services
from authgate.runtime import BackgroundWork
from authgate.services.api_key_views import KeySpec
from authgate.services.utmstack_import import ImportOptions, UtmStackImporter
from authgate.services.utmstack_rows import parse_source
from authgate.settings import Settings
from authgate.storage.utmstack_source import tables_from_document
from figures import exit_on_sigterm, percentile
from scratch_db import scratch_database

CLIENT_IP = ip_address("10.1.2.3")
WARM_OWNERS = 100  # the sampled keys belong to these owners, verified once first


def export_document(users: int, keys: int) -> tuple[dict[str, Any], list[str]]:
    """A UTMStack export, and the plaintexts of the keys of the first owners."""
    now = datetime.now(UTC).replace(tzinfo=None)
    password_hash = bcrypt.hashpw(b"bench-password-long", bcrypt.gensalt(10)).decode()
    user_rows = [
        {
            "id": n,
            "login": f"user{n}",
            "password_hash": password_hash,
            "email": f"user{n}@example.com",
            "first_name": "Bench",
            "activated": True,
            "lang_key": "en",
            "created_by": "system",
            "created_date": (now - timedelta(days=n % 700)).isoformat(),
            "tfa_secret": None,
            "fs_manager": False,
            "default_password": n % 10 == 0,
        }
        for n in range(1, users + 1)
    ]
    authorities = [{"user_id": n, "authority_name": "ROLE_USER"} for n in range(1, users + 1)]
    allow_forms = ["10.0.0.0/8", "10.1.2.3", "10.1.2.3/16, 2001:db8::1", None, ""]
    key_rows = []
    sampled = []
    for n in range(keys):
        plaintext = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        owner = n % users + 1
        key_rows.append(
            {
                "id": str(uuid.UUID(int=random.getrandbits(128), version=4)),
                "user_id": owner,
                "name": f"integration-{n}",
                "api_key": plaintext,
                "allowed_ip": allow_forms[n % len(allow_forms)],
                "created_at": now.isoformat(),
                "expires_at": (now + timedelta(days=30 + n % 900)).isoformat(),
                "generated_at": now.isoformat(),
            }
        )
        if owner <= WARM_OWNERS:
            sampled.append(plaintext)
    document = {"jhi_user": user_rows, "jhi_user_authority": authorities, "api_keys": key_rows}
    return document, sampled


async def run(arguments: argparse.Namespace, url: str) -> None:
    document, sampled = export_document(arguments.users, arguments.keys)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), database_url=url)
        services = build_services(settings)
        work = BackgroundWork(services)
        try:
            await ensure_schema(services)
            await work.start(background=False)
            importer = UtmStackImporter(
                feed=services.feed,
                clock=services.clock,
                pepper=services.server_secret,
                audit=services.audit,
                max_key_lifetime_days=settings.api_keys.max_lifetime_days,
                second_factor=services.second_factor,
            )
            for label in ("first import", "second import (no-op)"):
                started = time.perf_counter()
                data = parse_source(tables_from_document(document))
                report = await importer.run(data, ImportOptions(), source="bench")
                seconds = time.perf_counter() - started
                counts = report.counts()
                print(
                    f"{label}: {seconds:6.1f} s  users {counts['users']}  keys {counts['keys']}",
                    flush=True,
                )
            await miss_latency(services, sampled, arguments.samples)
        finally:
            await work.close()


async def agk_keys(services: Any, owners: list[int], count: int) -> list[str]:
    """``count`` agk_ keys of the warm owners, made as the API makes them."""
    expires = datetime.now(UTC) + timedelta(days=30)
    made = []
    for n in range(count):
        spec = KeySpec(name=f"agk-{n}", allowed_networks=["10.0.0.0/8"], expires_at=expires)
        made.append((await services.api_keys.create(owners[n % len(owners)], spec)).plaintext)
    return made


async def miss_latency(services: Any, sampled: list[str], samples: int) -> None:
    """Cache misses of legacy keys, interleaved with misses of agk_ keys of the same
    owners (same load, same moment: the ratio is the figure to trust here)."""
    authenticate = services.key_auth.authenticate
    random.shuffle(sampled)
    # One key of each warm owner first (owner state cached), then never-seen keys.
    by_owner: dict[int, str] = {}
    for plaintext in sampled[:samples]:
        principal = await authenticate(plaintext, CLIENT_IP)
        by_owner.setdefault(principal.user_id, plaintext)
    fresh = [k for k in sampled[samples:] if k not in by_owner.values()][:samples]
    agk = await agk_keys(services, list(by_owner), len(fresh))
    timings: dict[str, list[float]] = {"legacy": [], "agk_": []}
    for legacy_key, agk_key in zip(fresh, agk, strict=True):
        for kind, plaintext in (("legacy", legacy_key), ("agk_", agk_key)):
            started = time.perf_counter()
            await authenticate(plaintext, CLIENT_IP)
            timings[kind].append((time.perf_counter() - started) * 1000)
    for kind, measured in timings.items():
        print(
            f"{kind} key cache miss ({len(measured)} keys never verified before, PostgreSQL):"
            f" p50 {statistics.median(measured):.2f} ms  p99 {percentile(measured, 0.99):.2f} ms"
        )
    ratio = statistics.median(timings["legacy"]) / statistics.median(timings["agk_"])
    print(f"legacy / agk_ cache-miss median: {ratio:.2f} (target: agk_'s p99 <= 2 ms)")
    started = time.perf_counter()
    for plaintext in list(by_owner.values()) * 50:
        await authenticate(plaintext, CLIENT_IP)
    hit_us = (time.perf_counter() - started) / (len(by_owner) * 50) * 1e6
    print(f"legacy key cache hit: {hit_us:.1f} us per verification")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=1_000)
    arguments = parser.parse_args()
    exit_on_sigterm()
    print(f"cores: {os.cpu_count()} (shared machine: figures are indicative)", file=sys.stderr)
    with scratch_database("utmimport") as url:
        asyncio.run(run(arguments, url))


if __name__ == "__main__":
    main()
