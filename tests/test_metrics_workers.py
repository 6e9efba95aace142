"""Metrics of `authgate serve --workers 2` (issue 16 item 2): whichever worker answers a
scrape, the counters are the sum over both workers, equal to the requests made; no
``_created`` series; gauges aggregated across workers."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authgate.runtime import GAUGE_PUBLISH_SECONDS
from tests.processes import AuthgateServer
from tests.test_workers import (
    ADMIN_PASSWORD,
    TLS,
    WORKERS,
    Outcome,
    Server,
    attribution_works,
    on_new_connection,
    workers_seen,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

METRICS_TOKEN = "metrics-token-for-the-workers-test-0123"
LOGINS = 12
REJECTED_TOKENS = 7
SCRAPES = 10
MAX_TRIES = 60  # until both workers have answered some logins
BAD_KEYS = 3  # refused keys from one address before it is blocked


class MetricsServer(Server):
    """`authgate serve --workers 2` on SQLite with a metrics token."""

    def __init__(self, workdir: Path) -> None:
        AuthgateServer.__init__(
            self,
            workdir,
            {
                "AUTHGATE_DATA_DIR": str(workdir / "data"),
                "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "AUTHGATE_METRICS_TOKEN": METRICS_TOKEN,
                "AUTHGATE_KEY_IP_MAX_FAILURES": str(BAD_KEYS),
            },
            args=["--workers", str(WORKERS)],
        )


def _metrics_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("authgate-metrics-*"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MetricsServer]:
    running = MetricsServer(tmp_path)
    try:
        running.wait_until_up(timeout=120)  # two workers importing on a busy machine
        yield running
    finally:
        running.stop()


def login(client: httpx2.Client) -> bool:
    response = client.post(
        "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return True


def rejected_token(client: httpx2.Client) -> bool:
    response = client.get("/api/account", headers={"Authorization": "Bearer not.a.token"})
    assert response.status_code == 401, response.text
    return True


def bad_key(client: httpx2.Client) -> bool:
    response = client.get("/api/account", headers={"Authorization": "Bearer agk_not_a_key"})
    assert response.status_code in (401, 429), response.text
    return True


def scrape(server: MetricsServer) -> tuple[str, int | None]:
    """One scrape on a new connection: the text and the worker that answered."""
    text: list[str] = []

    def read(client: httpx2.Client) -> bool:
        response = client.get(
            "/management/prometheus", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        text.append(response.text)
        return True

    worker = on_new_connection(server, read).worker
    return text[0], worker


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_counters_equal_the_requests_made_whichever_worker_answers(
    server: MetricsServer,
) -> None:
    before = _metrics_dirs()
    outcomes: list[Outcome] = [on_new_connection(server, login) for _ in range(LOGINS)]
    made = LOGINS
    # Until both workers have answered logins (the kernel spreads new connections).
    while attribution_works(server) and len(workers_seen(outcomes)) < WORKERS:
        assert made < MAX_TRIES, "every login reached one worker"
        outcomes.append(on_new_connection(server, login))
        made += 1
    for _ in range(REJECTED_TOKENS):
        on_new_connection(server, rejected_token)
    # Block this address for API keys: every worker learns of it (the change feed) and
    # reports the same one block; the gauge must not add them up.
    for _ in range(BAD_KEYS):
        on_new_connection(server, bad_key)
    time.sleep(2 * GAUGE_PUBLISH_SECONDS + 1)

    answered_by: set[int] = set()
    for _ in range(SCRAPES):
        text, worker = scrape(server)
        if worker is not None:
            answered_by.add(worker)
        logins = samples(text, "authgate_logins_total")
        assert logins == {frozenset({("outcome", "success"), ("reason", "none")}): made}, text
        rejections = samples(text, "authgate_token_rejections_total")
        assert sum(rejections.values()) == REJECTED_TOKENS, text
        assert "_created" not in text
        # Per-worker quantities are summed over the workers (one series); ratios stay
        # per worker (a pid label).
        buffered = samples(text, "authgate_buffered_records")
        assert buffered, text
        assert all("pid" not in dict(labels) for labels in buffered)
        ratios = samples(text, "authgate_cache_hit_ratio_percent")
        assert {dict(labels).get("pid") for labels in ratios} - {None}, text
        assert samples(text, "authgate_active_api_keys"), text
        blocked = samples(text, "authgate_blocked_addresses")
        assert blocked == {frozenset({("name", "api_keys")}): 1.0}, text
    print(f"{made} logins over workers {dict(workers_seen(outcomes))}; scrapes by {answered_by}")  # noqa: T201 - shown by pytest -s
    if attribution_works(server):
        assert len(workers_seen(outcomes)) == WORKERS

    server.stop()
    # The run's private metrics directory is gone with the server.
    assert not (_metrics_dirs() - before)


def test_single_worker_has_no_created_series(tmp_path: Path) -> None:
    single = AuthgateServer(
        tmp_path,
        {
            "AUTHGATE_DATA_DIR": str(tmp_path / "data"),
            "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AUTHGATE_METRICS_TOKEN": METRICS_TOKEN,
        },
    )
    try:
        single.wait_until_up(timeout=120)
        with httpx2.Client(base_url=single.base_url, verify=TLS, timeout=10) as client:
            login(client)
            text = client.get(
                "/management/prometheus", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            ).text
    finally:
        single.stop()
    assert samples(text, "authgate_logins_total")
    assert "_created" not in text
