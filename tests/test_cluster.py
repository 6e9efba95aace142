"""Three `authgate serve` nodes on one PostgreSQL and one Redis agree on every change.

Each node is its own process on its own loopback port (one worker each), configured
as a cluster (shared pepper and signing keys from `authgate cluster init`). Redis is
a private `redis-server` started here, so that killing it disturbs nothing else.

What is shown:
* a key revoked on node A is refused by B and C; repeated many times, with Redis and
  after Redis is killed, the delays are printed and written to
  ``test-results/cluster-propagation.json`` (the benchmark holds them to the 1 s
  target; a test asserts no wall-clock threshold, only that every change arrives);
* the other kinds of change (logout, deactivation, allow-list edit) reach every node;
* with a 10 s poll interval a change still arrives long before the next poll: the
  Redis doorbell woke the pollers;
* a restarted node serves at once, with current state;
* nodes refuse configurations that would break the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.processes import AUTHGATE, AuthgateServer, Process, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ADMIN_PASSWORD = "cluster-operator-password"
GIVE_UP_S = 5.0
TRIALS = 20  # revocations per phase (with Redis, without): 2 x 20 x 2 nodes = 80 samples
RESULTS = Path(__file__).parents[1] / "test-results"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]


# -- the deployment -----------------------------------------------------------------------


class RedisServer(Process):
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            log_path=workdir / "redis.log",
            cwd=workdir,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            completed = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if completed.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not start\n{self.diagnostics()}")


def cluster_secrets(directory: Path) -> dict[str, str]:
    completed = subprocess.run(
        [str(AUTHGATE), "cluster", "init", str(directory)], capture_output=True, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode()
    return {
        "AUTHGATE_CLUSTER": "true",
        "AUTHGATE_API_KEY_PEPPER_FILE": str(directory / "api-key-pepper"),
        "AUTHGATE_AUDIT_KEY_FILE": str(directory / "audit-key"),
        "AUTHGATE_TFA_KEY_FILE": str(directory / "tfa-key"),
        "AUTHGATE_SIGNING_KEYS_FILE": str(directory / "signing-keys.json"),
    }


@dataclass
class Deployment:
    workdir: Path
    environment: dict[str, str]
    nodes: dict[str, AuthgateServer] = field(default_factory=dict)

    def start(self, name: str, *, port: int | None = None, **extra: str) -> AuthgateServer:
        node = AuthgateServer(
            self.workdir / name,
            {
                **self.environment,
                "AUTHGATE_DATA_DIR": str(self.workdir / name / "data"),
                **extra,
            },
            port=port,
            log_name=f"server-{len(self.nodes)}-{time.monotonic_ns()}.log",
        )
        self.nodes[name] = node
        return node

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def fresh_database(request: pytest.FixtureRequest) -> str:
    """A database of the deployment's own: deployments of different tests overlap."""
    base: str = request.getfixturevalue("postgres_schema")
    url = create_postgres_database(base)
    if url is None:
        pytest.skip("needs the right to create PostgreSQL databases")
    request.addfinalizer(lambda: drop_postgres_database(url))
    return url


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis: RedisServer
) -> Iterator[Deployment]:
    """Nodes a, b and c; a starts first (it creates the admin user)."""
    workdir = tmp_path_factory.mktemp("cluster")
    environment = {
        "AUTHGATE_DATABASE_URL": fresh_database(request),
        "AUTHGATE_REDIS_URL": redis.url,
        "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "AUTHGATE_KEY_IP_MAX_FAILURES": "100000",  # probes send refused keys on purpose
        **cluster_secrets(workdir / "secrets"),
    }
    deployment = Deployment(workdir, environment)
    try:
        deployment.start("a").wait_until_up()
        for name in ("b", "c"):
            deployment.start(name)
        for name in ("b", "c"):
            deployment.nodes[name].wait_until_up()
        yield deployment
    finally:
        deployment.stop()


# -- talking to nodes ----------------------------------------------------------------------


class Node:
    """A keep-alive client for one node (one worker: every request reaches it)."""

    def __init__(self, server: AuthgateServer) -> None:
        self.server = server
        self.client = httpx2.Client(base_url=server.base_url, timeout=10.0)

    def whoami(self, credential: str) -> int:
        """Status of an authenticated request that never touches the database when cached."""
        headers = {"Authorization": f"Bearer {credential}"}
        return self.client.get("/api/authenticate", headers=headers).status_code

    def close(self) -> None:
        self.client.close()


def admin_token(node: Node) -> str:
    response = node.client.post(
        "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["id_token"]
    return token


def create_key(node: Node, token: str, name: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "allowedIp": ["127.0.0.1"],
        "expiresAt": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        **fields,
    }
    response = node.client.post(
        "/api/api-keys", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def refused_after(node: Node, credential: str, since: float) -> float:
    """Seconds from ``since`` until ``node`` refuses ``credential`` (fails after GIVE_UP_S)."""
    while True:
        status = node.whoami(credential)
        now = time.monotonic()
        if status in (401, 403):  # refused: unknown/revoked (401) or not allowed here (403)
            return now - since
        assert status == 200, f"unexpected {status} from {node.server.base_url}"
        if now - since > GIVE_UP_S:
            pytest.fail(
                f"{node.server.base_url} still accepts the credential {GIVE_UP_S} s after "
                f"the change\n{node.server.diagnostics()}"
            )
        time.sleep(0.002)


def propagation(
    change: Callable[[], httpx2.Response],
    credential: str,
    others: list[Node],
    pool: ThreadPoolExecutor,
) -> list[float]:
    """Make ``change`` on one node; how long each other node took to refuse ``credential``."""
    for node in others:
        assert node.whoami(credential) == 200  # warm: the credential is cached there
    started = time.monotonic()
    response = change()
    assert response.is_success, response.text
    return list(pool.map(lambda node: refused_after(node, credential, started), others))


def health(node: Node) -> tuple[str, dict[str, Any]]:
    response = node.client.get("/management/health")
    assert response.status_code == 200, response.text
    body = response.json()
    return body["status"], body["components"]


def summary(delays: list[float]) -> dict[str, float]:
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "samples": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def report(name: str, figures: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "cluster-propagation.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    known[name] = figures
    path.write_text(json.dumps(known, indent=2) + "\n")
    print(f"\n[{name}] {figures}")  # noqa: T201 - the measurement, shown by pytest -s


# -- the tests ---------------------------------------------------------------------------------


def test_revocation_reaches_every_node_with_and_without_redis(
    cluster: Deployment, redis: RedisServer
) -> None:
    a, b, c = (Node(cluster.nodes[name]) for name in ("a", "b", "c"))
    token = admin_token(a)
    keys = [create_key(a, token, f"revoke-{i}") for i in range(2 * TRIALS)]

    def revoke(key: dict[str, Any]) -> Callable[[], httpx2.Response]:
        return lambda: a.client.delete(
            f"/api/api-keys/{key['id']}", headers={"Authorization": f"Bearer {token}"}
        )

    assert health(b) == (
        "UP",
        {
            "db": {"status": "UP"},
            "redis": {"status": "UP"},
            "cluster": {"status": "UP", "details": {"liveNodes": 3, "problems": 0}},
        },
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        with_redis = [
            delay
            for key in keys[:TRIALS]
            for delay in propagation(revoke(key), key["key"], [b, c], pool)
        ]
        redis.kill()  # mid-test, without warning
        without_redis = [
            delay
            for key in keys[TRIALS:]
            for delay in propagation(revoke(key), key["key"], [b, c], pool)
        ]
    report("key revocation, Redis up", summary(with_redis))
    report("key revocation, Redis killed", summary(without_redis))
    # Logging in still works without Redis (throttling falls back to the database), and
    # health tells that Redis is down while the node stays UP.
    assert admin_token(b)
    status, components = health(b)
    assert (status, components["redis"]["status"]) == ("UP", "DOWN")
    for node in (a, b, c):
        node.close()


def test_every_kind_of_change_reaches_every_node(cluster: Deployment) -> None:
    a, b, c = (Node(cluster.nodes[name]) for name in ("a", "b", "c"))
    token = admin_token(a)
    headers = {"Authorization": f"Bearer {token}"}
    delays: dict[str, list[float]] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Logout of one token, on node A.
        session = admin_token(a)
        delays["logout"] = propagation(
            lambda: a.client.post("/api/logout", headers={"Authorization": f"Bearer {session}"}),
            session,
            [b, c],
            pool,
        )
        # An allow-list edit that excludes the caller.
        key = create_key(a, token, "edited")
        body = {"name": "edited", "allowedIp": ["192.0.2.1"], "expiresAt": key["expiresAt"]}
        delays["allow-list edit"] = propagation(
            lambda: a.client.put(f"/api/api-keys/{key['id']}", json=body, headers=headers),
            key["key"],
            [b, c],
            pool,
        )
        # Deactivating a user refuses that user's keys and tokens everywhere.
        created = a.client.post(
            "/api/users",
            json={"login": "dana", "email": "dana@example.com", "password": "cedar-password-long"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        dana = admin_token_for(a, "dana", "cedar-password-long")
        delays["user deactivated"] = propagation(
            lambda: a.client.put("/api/users/dana", json={"activated": False}, headers=headers),
            dana,
            [b, c],
            pool,
        )
        # Regenerating without grace refuses the old secret.
        rotated = create_key(a, token, "rotated")
        delays["key regenerated"] = propagation(
            lambda: a.client.post(f"/api/api-keys/{rotated['id']}/generate", headers=headers),
            rotated["key"],
            [b, c],
            pool,
        )
    report("other changes", {kind: summary(values) for kind, values in delays.items()})
    for node in (a, b, c):
        node.close()


def admin_token_for(node: Node, login: str, password: str) -> str:
    response = node.client.post("/api/authenticate", json={"username": login, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["id_token"]
    return token


def test_a_restarted_node_serves_at_once_with_current_state(cluster: Deployment) -> None:
    a = Node(cluster.nodes["a"])
    token = admin_token(a)
    kept = create_key(a, token, "kept")
    gone = create_key(a, token, "gone")
    c_server = cluster.nodes["c"]
    c_server.stop()
    revoked = a.client.delete(
        f"/api/api-keys/{gone['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code in (200, 204)
    started = time.monotonic()
    restarted = cluster.start("c", port=c_server.port)
    restarted.wait_until_up()
    c = Node(restarted)
    assert c.whoami(kept["key"]) == 200
    assert c.whoami(gone["key"]) == 401  # revoked while it was down
    assert c.whoami(token) == 200  # a token another node issued
    report("restart", {"serving_after_s": round(time.monotonic() - started, 2)})
    a.close()
    c.close()


def test_cluster_status_lists_the_nodes(cluster: Deployment) -> None:
    env = {**cluster.environment, "AUTHGATE_DATA_DIR": str(cluster.workdir / "cli")}
    completed = subprocess.run(
        [str(AUTHGATE), "cluster", "status"],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env},
        cwd=cluster.workdir,
    )
    assert completed.returncode == 0, completed.stderr.decode()
    listing = completed.stdout.decode()
    pids = [node.process.pid for node in cluster.nodes.values() if node.running]
    assert len(pids) == 3
    for pid in pids:
        assert f"pid {pid}" in listing


# -- refused configurations -------------------------------------------------------------------


@pytest.fixture
def first_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """A one-node cluster on a fresh database, without Redis."""
    deployment = Deployment(
        tmp_path,
        {
            "AUTHGATE_DATABASE_URL": fresh_database(request),
            "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            **cluster_secrets(tmp_path / "secrets"),
        },
    )
    try:
        deployment.start("first").wait_until_up()
        yield deployment
    finally:
        deployment.stop()


def refusal(node: AuthgateServer) -> str:
    assert node.wait_for_exit() != 0
    return node.diagnostics()


def test_a_node_with_another_pepper_is_refused(first_node: Deployment, tmp_path: Path) -> None:
    other = cluster_secrets(tmp_path / "other-secrets")
    node = first_node.start(
        "stranger", AUTHGATE_API_KEY_PEPPER_FILE=other["AUTHGATE_API_KEY_PEPPER_FILE"]
    )
    assert "uses another API key pepper" in refusal(node)


def test_a_node_with_another_audit_key_is_refused(first_node: Deployment, tmp_path: Path) -> None:
    """A node whose audit key differs from the running node's would write records every
    other node reads as forged: it refuses to start, saying so of the live node first
    (the stored fingerprint's check, which holds with no node live, is tested
    in-process in tests/services/test_audit_key.py)."""
    other = cluster_secrets(tmp_path / "other-secrets")
    node = first_node.start("stranger", AUTHGATE_AUDIT_KEY_FILE=other["AUTHGATE_AUDIT_KEY_FILE"])
    output = refusal(node)
    assert "uses another audit key: give every node the same AUTHGATE_AUDIT_KEY_FILE" in output
    assert os.stat(other["AUTHGATE_AUDIT_KEY_FILE"]).st_mode & 0o777 == 0o600


def test_a_node_with_another_second_factor_key_is_refused(
    first_node: Deployment, tmp_path: Path
) -> None:
    """TOTP secrets one node encrypts, a node with another AUTHGATE_TFA_KEY cannot read
    (its users' codes were refused there, with a 500): it refuses to start."""
    other = cluster_secrets(tmp_path / "other-secrets")
    node = first_node.start("stranger", AUTHGATE_TFA_KEY_FILE=other["AUTHGATE_TFA_KEY_FILE"])
    assert "uses another second-factor key" in refusal(node)


def test_a_node_with_other_signing_keys_is_refused(first_node: Deployment, tmp_path: Path) -> None:
    other = cluster_secrets(tmp_path / "other-secrets")
    node = first_node.start(
        "stranger", AUTHGATE_SIGNING_KEYS_FILE=other["AUTHGATE_SIGNING_KEYS_FILE"]
    )
    assert "cannot verify the tokens" in refusal(node)


def test_a_pepper_other_than_the_stored_keys_one_is_refused_even_alone(
    first_node: Deployment, tmp_path: Path
) -> None:
    """After the last node stops, a node with a new pepper would refuse every stored key."""
    a = Node(first_node.nodes["first"])
    create_key(a, admin_token(a), "stored")
    a.close()
    first_node.nodes["first"].stop()
    other = cluster_secrets(tmp_path / "other-secrets")
    node = first_node.start(
        "replacement", AUTHGATE_API_KEY_PEPPER_FILE=other["AUTHGATE_API_KEY_PEPPER_FILE"]
    )
    assert "not the one the stored API keys were hashed with" in refusal(node)


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        ("AUTHGATE_API_KEY_PEPPER_FILE", {}, "every node needs the same API key pepper"),
        ("AUTHGATE_AUDIT_KEY_FILE", {}, "every node needs the same audit key"),
        ("AUTHGATE_TFA_KEY_FILE", {}, "every node needs the same second-factor key"),
        ("AUTHGATE_SIGNING_KEYS_FILE", {}, "every node needs the same JWT signing keys"),
        (
            "AUTHGATE_DATABASE_URL",
            {"AUTHGATE_DATABASE_URL": "sqlite+aiosqlite:///cluster.db"},
            "several nodes need PostgreSQL",
        ),
    ],
)
def test_cluster_nodes_refuse_single_machine_configurations(
    tmp_path: Path, drop: str, extra: dict[str, str], message: str
) -> None:
    environment = {
        "AUTHGATE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/unused",
        **cluster_secrets(tmp_path / "secrets"),
    }
    del environment[drop]
    environment.update(extra)
    node = AuthgateServer(tmp_path / "node", environment)
    try:
        output = refusal(node)
    finally:
        node.stop()
    assert message in output
    assert not (tmp_path / "node" / "authgate-data" / "api-key-pepper").exists()
    assert not (tmp_path / "node" / "authgate-data" / "audit-key").exists()


def test_the_redis_doorbell_wakes_pollers_long_before_their_next_poll(
    request: pytest.FixtureRequest, tmp_path: Path, redis_for_doorbell: RedisServer
) -> None:
    """With a 10 s poll interval, a revocation still reaches the other node in a moment."""
    deployment = Deployment(
        tmp_path,
        {
            "AUTHGATE_DATABASE_URL": fresh_database(request),
            "AUTHGATE_REDIS_URL": redis_for_doorbell.url,
            "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AUTHGATE_CHANGE_POLL_INTERVAL_SECONDS": "10",
            **cluster_secrets(tmp_path / "secrets"),
        },
    )
    try:
        deployment.start("a").wait_until_up()
        deployment.start("b").wait_until_up()
        a, b = Node(deployment.nodes["a"]), Node(deployment.nodes["b"])
        token = admin_token(a)
        key = create_key(a, token, "doorbell")
        time.sleep(0.5)  # let b's poller settle into its 10 s wait
        with ThreadPoolExecutor(max_workers=1) as pool:
            (delay,) = propagation(
                lambda: a.client.delete(
                    f"/api/api-keys/{key['id']}", headers={"Authorization": f"Bearer {token}"}
                ),
                key["key"],
                [b],
                pool,
            )
        # GIVE_UP_S (5 s) is half the poll interval: only the doorbell can explain it.
        report("doorbell, 10 s poll interval", {"delay_ms": round(delay * 1000, 1)})
        a.close()
        b.close()
    finally:
        deployment.stop()


@pytest.fixture
def redis_for_doorbell(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()
