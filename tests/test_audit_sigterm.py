"""SIGTERM under load: every request a real `authgate serve` answered 200 is counted in
the key's usage rollups, and has its audit record (per-request successes on), once the
process has exited."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from authgate.clock import utc_now
from authgate.security.audit_chain import AuditKey
from authgate.services.audit.writer import AuditLog
from authgate.services.audit_verification import ChainVerification
from authgate.storage.db import Database

AUTHGATE = Path(sys.executable).with_name("authgate")
ADMIN_PASSWORD = "sigterm-operator-password"
CLIENTS = 6
LOAD_SECONDS = 3.0
SIGTERM_AFTER_SECONDS = 1.2

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    env.update(
        {
            "AUTHGATE_DATA_DIR": str(data_dir),
            "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AUTHGATE_ARGON2_MEMORY_KIB": "8",
            "AUTHGATE_ARGON2_TIME_COST": "1",
            "AUTHGATE_ACCESS_LOG": "false",
            "AUTHGATE_KEY_IP_MAX_FAILURES": "100000",
            # Long intervals: the SIGTERM arrives while records are still buffered.
            "AUTHGATE_AUDIT_FLUSH_INTERVAL_SECONDS": "5",
            "AUTHGATE_USAGE_FLUSH_INTERVAL_SECONDS": "5",
            # The documented per-request audit of accepted key requests: each must land.
            "AUTHGATE_AUDIT_API_KEY_SUCCESSES": "true",
        }
    )
    return env


def diagnostics(tmp_path: Path) -> str:
    return "\n".join(
        f"{name}:\n{(tmp_path / name).read_text(errors='replace')[-3000:]}"
        for name in ("server.stdout", "server.stderr")
        if (tmp_path / name).exists()
    )


def wait_until_up(process: subprocess.Popen[bytes], base_url: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}\n{diagnostics(tmp_path)}")
        try:
            if httpx2.get(f"{base_url}/api/ping", timeout=2.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not up within 20 s\n{diagnostics(tmp_path)}")


def create_key(base_url: str) -> tuple[str, str]:
    with httpx2.Client(base_url=base_url, timeout=10) as client:
        login = client.post(
            "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        expires = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        created = client.post(
            "/api/api-keys",
            json={"name": "load", "allowedIp": ["127.0.0.1"], "expiresAt": expires},
            headers={"Authorization": f"Bearer {login.json()['id_token']}"},
        )
        assert created.status_code == 201, created.text
        return created.json()["id"], created.json()["key"]


async def drive_load(
    base_url: str, key: str, process: subprocess.Popen[bytes]
) -> tuple[Counter[int], Counter[str]]:
    """Several clients call with the key for LOAD_SECONDS; SIGTERM is sent meanwhile.
    Returns the statuses received and the kinds of transport errors."""
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + LOAD_SECONDS

    async def client_loop() -> None:
        async with httpx2.AsyncClient(base_url=base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    response = await client.get("/api/account", headers={"Utm-Api-Key": key})
                except httpx2.TransportError as error:
                    errors[type(error).__name__] += 1
                    if process.poll() is not None:
                        return
                    await asyncio.sleep(0.01)
                    continue
                statuses[response.status_code] += 1

    async def terminate() -> None:
        await asyncio.sleep(SIGTERM_AFTER_SECONDS)
        process.send_signal(signal.SIGTERM)

    await asyncio.gather(terminate(), *(client_loop() for _ in range(CLIENTS)))
    return statuses, errors


def count(database: Path, query: str, *parameters: object) -> int:
    connection = sqlite3.connect(database)
    try:
        value: int = connection.execute(query, parameters).fetchone()[0]
        return value
    finally:
        connection.close()


def test_sigterm_under_load_loses_no_audit_or_usage_record(tmp_path: Path) -> None:
    """Every 200 answered before and during a SIGTERM shutdown has exactly one
    API_KEY_ACCESS_SUCCESS audit record and is counted once in the usage rollups (whose
    last-used time is the key's); the sample keeps its bound; the chain verifies."""
    data_dir = tmp_path / "data"
    env = server_environment(data_dir)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with (
        (tmp_path / "server.stdout").open("wb") as stdout,
        (tmp_path / "server.stderr").open("wb") as stderr,
    ):
        process = subprocess.Popen(
            [str(AUTHGATE), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            wait_until_up(process, base_url, tmp_path)
            public_id, key = create_key(base_url)
            statuses, errors = asyncio.run(drive_load(base_url, key, process))
            try:
                returncode = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pytest.fail(f"server still running 15 s after SIGTERM\n{diagnostics(tmp_path)}")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    accepted = statuses[200]
    context = f"statuses={dict(statuses)} errors={dict(errors)}\n{diagnostics(tmp_path)}"
    # uvicorn ends a graceful SIGTERM shutdown by re-raising the signal (or exits 0).
    assert returncode in (0, -signal.SIGTERM), context
    assert "Application shutdown complete" in (tmp_path / "server.stderr").read_text(), context
    assert accepted > 20, context  # a real load, not a handful of requests
    assert set(statuses) == {200}, context

    database = data_dir / "authgate.db"
    # Records name the key by its database id; the API by its public UUID.
    key_id = count(database, "SELECT id FROM api_keys WHERE public_id = ?", public_id)
    audited = count(
        database,
        "SELECT COUNT(*) FROM audit_events WHERE event_type = 'API_KEY_ACCESS_SUCCESS' "
        "AND api_key_id = ?",
        key_id,
    )
    counted = count(
        database,
        "SELECT COALESCE(SUM(status_2xx), 0) FROM api_key_usage_minutes WHERE api_key_id = ?",
        key_id,
    )
    sampled = count(
        database,
        "SELECT COUNT(*) FROM api_key_usage WHERE api_key_id = ? AND status = 200",
        key_id,
    )
    assert (audited, counted) == (accepted, accepted), context
    assert sampled == min(accepted, 50), context

    verification = asyncio.run(verify_chain(database))
    assert verification.intact, verification
    assert verification.checked >= audited
    # The checkpoint published at shutdown names the final head, in the log.
    log_text = (tmp_path / "server.stderr").read_text()
    assert '"reason":"shutdown"' in log_text, context


async def verify_chain(database: Path) -> ChainVerification:
    """Verify under the audit key the server generated into its data dir."""
    key = AuditKey(base64.b64decode((database.parent / "audit-key").read_text().strip()))
    db = Database(f"sqlite+aiosqlite:///{database}")
    try:
        audit = AuditLog(
            db=db, key=key, clock=utc_now, flush_interval=1, retention=timedelta(days=365)
        )
        return await audit.verify()
    finally:
        await db.close()
