"""The container image, built and run for real (podman).

``scripts/container-image`` builds it from a wheelhouse made on this machine; the
container then runs on the host network against the test PostgreSQL (a database of its
own, migrated by the image's ``authgate migrate``) and Redis. The test logs in, creates
an API key and uses it, stops the container with SIGTERM while the audit and usage
records are still buffered, and reads them from the database afterwards.

Skipped without podman and runc, or without a base image: CI (``.ci/run``) installs
podman, runc and debootstrap and builds the base from a Debian rootfs
(``scripts/container-base-image``, cached in /var/cache/authgate-ci); elsewhere set
``AUTHGATE_TEST_CONTAINER_BASE_IMAGE`` to an image you have (python:3.11-slim-bookworm).
podman runs with ``scripts/containers.conf`` (runc, no default ulimits).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import REDIS_URL as CONFTEST_REDIS_URL
from tests.conftest import run_in_own_loop
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "scripts" / "containers.conf"
POSTGRES_URL = os.environ.get("AUTHGATE_TEST_DATABASE_URL", "")
REDIS_URL = CONFTEST_REDIS_URL or ""  # this xdist worker's database
BASE_IMAGE = os.environ.get("AUTHGATE_TEST_CONTAINER_BASE_IMAGE", "")
ADMIN_PASSWORD = "container-operator-password"
KEY_USES = 7
STOP_TIMEOUT_SECONDS = 30


def _missing() -> str | None:
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs podman, runc and debootstrap)"
    if not POSTGRES_URL.startswith("postgresql"):
        return "needs PostgreSQL: AUTHGATE_TEST_DATABASE_URL"
    if not REDIS_URL:
        return "needs Redis: AUTHGATE_TEST_REDIS_URL"
    if not BASE_IMAGE and (os.geteuid() != 0 or shutil.which("debootstrap") is None):
        return (
            "no base image: set AUTHGATE_TEST_CONTAINER_BASE_IMAGE, or run as root with debootstrap"
        )
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(900),
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
]


def podman_environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        env=podman_environment(),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image, built from this checkout; removed afterwards."""
    tag = f"localhost/authgate:test-{os.getpid()}"
    base = ["--base-image", BASE_IMAGE] if BASE_IMAGE else ["--debian-base"]
    built = subprocess.run(
        [str(ROOT / "scripts" / "container-image"), "--tag", tag, *base],
        env=podman_environment(),
        capture_output=True,
        text=True,
        timeout=780,
        check=False,
    )
    assert built.returncode == 0, f"image build failed:\n{built.stderr[-6000:]}"
    assert built.stdout.strip().splitlines()[-1] == tag
    yield tag
    podman("rmi", "--force", tag, check=False)


@pytest.fixture
def database() -> Iterator[str]:
    """An empty database of this test's own on the test server, dropped afterwards."""
    base = make_url(POSTGRES_URL)
    name = f"authgate_container_{os.getpid()}_{secrets.token_hex(3)}"

    async def execute(statement: str) -> None:
        engine = create_async_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    run_in_own_loop(lambda: execute(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    run_in_own_loop(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def query(url: str, statement: str, **parameters: object) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(text(statement), parameters)
                return [tuple(row) for row in result]
        finally:
            await engine.dispose()

    return run_in_own_loop(run)


def inspect(kind: str, name: str) -> dict[str, object]:
    document = json.loads(podman(kind, "inspect", name).stdout)
    assert isinstance(document, list)
    found: dict[str, object] = document[0]
    return found


def test_image_metadata_and_contents(image: str) -> None:
    """Non-root user, /data volume, `authgate serve --host 0.0.0.0`, a liveness
    healthcheck; the final stage holds no wheelhouse, no pip and no compiler."""
    document = inspect("image", image)
    config, healthcheck = document["Config"], document["Healthcheck"]  # podman's layout
    assert isinstance(config, dict)
    assert isinstance(healthcheck, dict)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["authgate"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0"]  # noqa: S104 - the image default
    assert "/data" in config["Volumes"]
    assert "AUTHGATE_DATA_DIR=/data" in config["Env"]
    assert "/management/health/liveness" in " ".join(healthcheck["Test"])

    probe = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c",
        "id -u; stat -c '%u %a' /data;"
        " for path in /build /opt/authgate/bin/pip /usr/bin/gcc /usr/bin/cc; do"
        " [ -e $path ] && echo present: $path; done;"
        " find / -xdev -name '*.whl' -path '*wheelhouse*' 2>/dev/null | head -n 3",
    )  # fmt: skip
    assert probe.stdout.split() == ["10001", "10001", "700"], probe.stdout


def test_serves_postgres_and_redis_and_loses_nothing_on_sigterm(image: str, database: str) -> None:
    """Migrate, serve, log in, create a key and use it; SIGTERM; the container exits 0
    before podman's deadline and every record reached PostgreSQL."""
    asyncpg_url = make_url(database).set(drivername="postgresql+asyncpg")
    environment = {
        "AUTHGATE_DATABASE_URL": asyncpg_url.render_as_string(hide_password=False),
        "AUTHGATE_REDIS_URL": REDIS_URL,
        "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "AUTHGATE_ARGON2_MEMORY_KIB": "8",
        "AUTHGATE_ARGON2_TIME_COST": "1",
        # Long intervals: the SIGTERM arrives while the records are still buffered.
        "AUTHGATE_AUDIT_FLUSH_INTERVAL_SECONDS": "60",
        "AUTHGATE_USAGE_FLUSH_INTERVAL_SECONDS": "60",
    }
    env_args = [arg for name, value in environment.items() for arg in ("--env", f"{name}={value}")]
    migrated = podman("run", "--rm", "--network", "host", *env_args, image, "migrate")
    assert "database schema at revision" in migrated.stdout, migrated.stdout + migrated.stderr

    port = free_port()
    name = f"authgate-test-{os.getpid()}-{secrets.token_hex(3)}"
    # The port through AUTHGATE_PORT, which the healthcheck reads too. Loopback only:
    # on the host network, 0.0.0.0 would listen on every interface.
    podman(
        "run", "--detach", "--name", name, "--network", "host", *env_args,
        "--env", f"AUTHGATE_PORT={port}", image, "serve", "--host", "127.0.0.1",
    )  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_up(name, base_url)
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        assert podman("exec", name, "python3", "-c", "import os; print(os.getuid())").stdout == (
            "10001\n"
        )
        public_id = log_in_create_and_use_key(base_url)

        started = time.monotonic()
        podman("stop", "--time", str(STOP_TIMEOUT_SECONDS), name, timeout=STOP_TIMEOUT_SECONDS + 30)
        stop_seconds = time.monotonic() - started
        state = inspect("container", name)["State"]
        logs = podman("logs", name).stderr
    finally:
        podman("rm", "--force", name, check=False)

    assert isinstance(state, dict)
    # Records name the key by its database id; the API by its public UUID.
    ((key_id,),) = query(database, "SELECT id FROM api_keys WHERE public_id = :id", id=public_id)
    # 0: it stopped by itself on SIGTERM (podman's SIGKILL after the deadline gives 137).
    assert state["ExitCode"] == 0, f"exit {state['ExitCode']} after {stop_seconds:.1f} s\n{logs}"
    assert "Application shutdown complete" in logs, logs
    assert "Traceback" not in logs, logs

    events: dict[object, object] = dict(
        query(  # type: ignore[arg-type]
            database,
            "SELECT event_type, COUNT(*) FROM audit_events GROUP BY event_type",
        )
    )
    assert events.get("AUTH_SUCCESS") == 1, events
    assert events.get("API_KEY_CREATED") == 1, events
    # Accepted key requests are aggregated, not audited one by one: the trail holds the
    # key's first use (a security event), the per-minute rollups count every request,
    # and the bounded sample of recent requests holds each of these few.
    assert events.get("API_KEY_ACCESS_SUCCESS") == 1, events
    rolled_up = query(
        database,
        "SELECT SUM(requests), SUM(status_2xx) FROM api_key_usage_minutes WHERE api_key_id = :key",
        key=key_id,
    )
    assert rolled_up == [(KEY_USES, KEY_USES)]
    usage = query(
        database,
        "SELECT COUNT(*) FROM api_key_usage WHERE api_key_id = :key AND status = 200",
        key=key_id,
    )
    assert usage == [(KEY_USES,)]


def wait_until_up(name: str, base_url: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running = inspect("container", name)["State"]
        assert isinstance(running, dict)
        if not running["Running"]:
            pytest.fail(f"container exited:\n{podman('logs', name).stderr[-6000:]}")
        try:
            # Readiness: the database answers and the image's `migrate` brought it up to date.
            ready = httpx2.get(f"{base_url}/management/health/readiness", timeout=2.0)
            if ready.status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not up within 90 s:\n{podman('logs', name).stderr[-6000:]}")


def log_in_create_and_use_key(base_url: str) -> str:
    """Log in as admin, create an API key for 127.0.0.1, call with it KEY_USES times;
    the key's public id."""
    with httpx2.Client(base_url=base_url, timeout=10) as client:
        login = client.post(
            "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        expires = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        created = client.post(
            "/api/api-keys",
            json={"name": "container", "allowedIp": ["127.0.0.1"], "expiresAt": expires},
            headers={"Authorization": f"Bearer {login.json()['id_token']}"},
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        for _ in range(KEY_USES):
            account = client.get("/api/account", headers={"Utm-Api-Key": key})
            assert account.status_code == 200, account.text
            assert account.json()["login"] == "admin"
        public_id: str = created.json()["id"]
        return public_id
