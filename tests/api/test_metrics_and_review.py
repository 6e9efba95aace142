"""Prometheus metrics at /management/prometheus (metrics token or admin credentials; values
that move with traffic) and the admin review of API keys at GET /api/api-keys/review."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authgate.app import create_app
from authgate.reasons import Reason
from authgate.services.audit.events import EventType
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    FakeClock,
    Harness,
    bearer,
    test_settings,
)

METRICS = "/management/prometheus"
METRICS_TOKEN = "metrics-token-for-tests-0123456789"
REVIEW = "/api/api-keys/review"
WAIT = 60.0  # patience for a busy host (the wait ends on delivery); no latency is asserted


@pytest.fixture
async def harness(tmp_path: Path, database_url: str, clock: FakeClock) -> AsyncIterator[Harness]:
    """The conftest harness, with a metrics token configured."""
    settings = test_settings(
        tmp_path / "data", database_url=database_url, metrics_token=METRICS_TOKEN
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app=app, services=app.state.services, client=client, clock=clock)


async def scrape(harness: Harness) -> str:
    response = await harness.client.get(METRICS, headers=bearer(METRICS_TOKEN))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def sample(text: str, metric: str, /, **labels: str) -> float:
    """The value of sample ``metric`` whose labels include ``labels``; 0 when absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == metric and labels.items() <= found.labels.items():
                return float(found.value)
    return 0.0


def families(text: str) -> dict[str, list[Any]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


# --- access -----------------------------------------------------------------------------------


async def test_metrics_token_gives_access(harness: Harness) -> None:
    """The configured metrics token is enough to scrape (no user needed)."""
    text = await scrape(harness)

    assert "# TYPE authgate_logins_total counter" in text


async def test_wrong_metrics_token_is_401(harness: Harness) -> None:
    """A wrong token is tried as an ordinary credential, which fails: 401."""
    for credential in ("not-the-metrics-token", METRICS_TOKEN + "x", METRICS_TOKEN[:-1]):
        response = await harness.client.get(METRICS, headers=bearer(credential))
        assert response.status_code == 401, (credential, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "authgate_logins" not in response.text


async def test_no_credentials_is_401(harness: Harness) -> None:
    """Without any credential the metrics endpoint answers 401."""
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic YTpi"}):
        response = await harness.client.get(METRICS, headers=headers)
        assert response.status_code == 401, (headers, response.text)


async def test_admin_jwt_gives_access_and_user_jwt_is_403(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """An administrator's token may scrape; an ordinary user's is refused with 403."""
    admin = await harness.client.get(METRICS, headers=bearer(admin_token))
    user = await harness.client.get(METRICS, headers=bearer(user_token))

    assert admin.status_code == 200
    assert "authgate_logins_total" in admin.text
    assert user.status_code == 403, user.text
    assert "authgate_logins" not in user.text


async def test_admin_api_key_needs_the_admin_scope(harness: Harness, admin_token: str) -> None:
    """An admin's key with the admin scope may scrape; the same admin's read key may not."""
    with_admin = await harness.create_key(admin_token, "scraper", scopes=["read", "admin"], days=90)
    read_only = await harness.create_key(admin_token, "reader", scopes=["read"], days=90)

    allowed = await harness.client.get(METRICS, headers={"Utm-Api-Key": with_admin["key"]})
    refused = await harness.client.get(METRICS, headers={"Utm-Api-Key": read_only["key"]})

    assert allowed.status_code == 200, allowed.text
    assert refused.status_code == 403, refused.text


async def test_refused_credentials_at_the_metrics_endpoint_are_audited(harness: Harness) -> None:
    """A forged bearer token and an invalid API key sent to /management/prometheus are
    audited (TOKEN_REJECTED, API_KEY_ACCESS_FAILURE) like on every other endpoint."""
    forged = await harness.client.get(METRICS, headers=bearer("forged.jwt.token"))
    bad_key = await harness.client.get(METRICS, headers={"Utm-Api-Key": "agk_made_up"})
    assert (forged.status_code, bad_key.status_code) == (401, 401)

    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("TOKEN_REJECTED", "API_KEY_ACCESS_FAILURE")),
        PageRequest(size=100),
    )

    assert sorted(entry.event_type for entry in page.items) == [
        "API_KEY_ACCESS_FAILURE",
        "TOKEN_REJECTED",
    ]


@pytest.mark.parametrize("path", ["/api/account", METRICS])
async def test_invalid_keys_at_the_metrics_endpoint_count_toward_the_address_block(
    tmp_path: Path, database_url: str, clock: FakeClock, path: str
) -> None:
    """Guessing API keys at /management/prometheus counts toward key_ip_max_failures as at
    /api/account: past the limit the address is blocked (429), not free to keep guessing."""
    settings = test_settings(
        tmp_path / "data", database_url=database_url, metrics_token=METRICS_TOKEN,
        key_ip_max_failures=3,
    )  # fmt: skip
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            statuses = [
                (await client.get(path, headers={"Utm-Api-Key": f"agk_guess_{n}"})).status_code
                for n in range(5)
            ]
            elsewhere = await client.get("/api/account", headers={"Utm-Api-Key": "agk_guess_x"})

    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429], statuses
    assert elsewhere.status_code == 429


# --- content ----------------------------------------------------------------------------------


async def test_exposition_has_every_metric_after_traffic(
    harness: Harness, admin_token: str
) -> None:
    """After a login, a JWT request, a key request and a forged token, the exposition has
    the counters, histograms and gauges with their labels."""
    key = await harness.create_key(admin_token, "metrics-key", days=90)
    assert (
        await harness.client.get("/api/account", headers=bearer(admin_token))
    ).status_code == 200
    used = await harness.client.get("/api/account", headers={"Utm-Api-Key": key["key"]})
    assert used.status_code == 200
    forged = await harness.client.get("/api/account", headers=bearer("forged.jwt.token"))
    assert forged.status_code == 401

    text = await scrape(harness)

    assert sample(text, "authgate_logins_total", outcome="success", reason="none") >= 1
    assert sample(text, "authgate_api_key_requests_total", outcome="success") >= 1
    assert sum(
        s.value for s in families(text)["authgate_token_rejections"]
        if s.name == "authgate_token_rejections_total"
    ) >= 1  # fmt: skip
    assert sample(text, "authgate_authentication_seconds_bucket", method="jwt", le="+Inf") >= 1
    assert sample(text, "authgate_authentication_seconds_count", method="api_key") >= 1
    assert sample(text, "authgate_password_hash_seconds_count") >= 1
    assert 'authgate_logins_total{outcome="success",reason="none"}' in text
    assert 'authgate_authentication_seconds_bucket{le="0.001",method="jwt"}' in text
    gauges = families(text)
    assert {s.labels["name"] for s in gauges["authgate_cache_entries"]} >= {
        "verified_tokens", "user_states", "revoked_tokens", "api_keys", "unknown_api_keys",
    }  # fmt: skip
    assert {s.labels["name"] for s in gauges["authgate_cache_hit_ratio_percent"]} >= {
        "verified_tokens", "api_keys",
    }  # fmt: skip
    assert {s.labels["name"] for s in gauges["authgate_alert_deliveries"]} >= {
        "log:delivered", "log:failed", "log:retries",
    }  # fmt: skip
    assert all(0 <= s.value <= 100 for s in gauges["authgate_cache_hit_ratio_percent"])
    assert "# TYPE authgate_cache_entries gauge" in text


async def test_counters_move_with_traffic(harness: Harness, admin_token: str) -> None:
    """Each kind of traffic raises its own counter by exactly what happened."""
    await harness.create_user("alice", USER_PASSWORD)
    key = await harness.create_key(admin_token, "counted", days=90)
    before = await scrape(harness)

    await harness.login("alice", USER_PASSWORD)
    await harness.login("admin", ADMIN_PASSWORD)
    failed = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": "wrong-password"}
    )
    assert failed.status_code == 401
    for _ in range(3):
        used = await harness.client.get("/api/account", headers={"Utm-Api-Key": key["key"]})
        assert used.status_code == 200
    refused_key = await harness.client.get("/api/account", headers={"Utm-Api-Key": "agk_bogus"})
    assert refused_key.status_code == 401
    for _ in range(2):
        forged = await harness.client.get("/api/account", headers=bearer("forged.jwt.token"))
        assert forged.status_code == 401
    assert (
        await harness.client.get("/api/account", headers=bearer(admin_token))
    ).status_code == 200

    after = await scrape(harness)

    def moved(metric: str, **labels: str) -> float:
        return sample(after, metric, **labels) - sample(before, metric, **labels)

    def moved_total(family: str) -> float:
        def total(text: str) -> float:
            samples = families(text).get(family, [])
            return float(sum(s.value for s in samples if s.name == f"{family}_total"))

        return total(after) - total(before)

    assert moved("authgate_logins_total", outcome="success", reason="none") == 2
    assert moved("authgate_logins_total", outcome="failure") == 1
    assert moved("authgate_api_key_requests_total", outcome="success", reason="none") == 3
    assert moved("authgate_api_key_requests_total", outcome="failure") == 1
    assert moved_total("authgate_token_rejections") == 2
    assert moved("authgate_authentication_seconds_count", method="api_key") == 3
    assert moved("authgate_authentication_seconds_count", method="jwt") == 1
    assert moved("authgate_password_hash_seconds_count") == 3


async def test_alert_delivery_gauge_moves(harness: Harness, admin_token: str) -> None:
    """A test alert delivered to the log sink raises authgate_alert_deliveries{log:delivered}."""
    before = sample(await scrape(harness), "authgate_alert_deliveries", name="log:delivered")

    response = await harness.client.post("/api/alert-sinks/test", headers=bearer(admin_token))
    assert response.json() == {"queued": 1}  # only the log sink is configured here

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while (
        sample(await scrape(harness), "authgate_alert_deliveries", name="log:delivered") == before
    ):
        assert loop.time() < deadline, "the test alert was not delivered to the log sink"
        await asyncio.sleep(0.05)
    after = sample(await scrape(harness), "authgate_alert_deliveries", name="log:delivered")
    assert after == before + 1


async def test_cache_gauges_follow_the_caches(harness: Harness, admin_token: str) -> None:
    """Verified-token cache entries and hit ratio reflect repeated use of one token."""
    for _ in range(5):
        response = await harness.client.get("/api/account", headers=bearer(admin_token))
        assert response.status_code == 200

    text = await scrape(harness)

    assert sample(text, "authgate_cache_entries", name="verified_tokens") >= 1
    assert sample(text, "authgate_cache_hit_ratio_percent", name="verified_tokens") > 0


# --- key review -------------------------------------------------------------------------------


def names(review: dict[str, list[dict[str, Any]]], reason: str) -> set[str]:
    return {key["name"] for key in review[reason]}


async def test_review_lists_keys_by_reason(harness: Harness, admin_token: str) -> None:
    """Unused keys (advancing the clock), keys without allowedIp, keys expiring within
    expiringDays and keys with write or admin scope each appear under their own list."""
    await harness.create_user("alice", USER_PASSWORD)
    alice = await harness.login("alice", USER_PASSWORD)
    await harness.create_key(alice, "stale", scopes=["read"], days=90)
    used = await harness.create_key(alice, "used", scopes=["read"], days=90)

    harness.clock.advance(days=31)
    response = await harness.client.get("/api/account", headers={"Utm-Api-Key": used["key"]})
    assert response.status_code == 200
    await harness.services.usage.flush()  # last use is written in batches
    alice = await harness.login("alice", USER_PASSWORD)
    admin = await harness.login("admin", ADMIN_PASSWORD)
    await harness.create_key(alice, "open", scopes=["read"], allowedIp=[], days=90)
    await harness.create_key(alice, "expiring", scopes=["read"], days=5)
    await harness.create_key(alice, "writer", scopes=["read", "write"], days=90)
    await harness.create_key(admin, "admin-scope", scopes=["read", "admin"], days=90)
    revoked = await harness.create_key(alice, "revoked-open", allowedIp=[], days=2)
    gone = await harness.client.delete(f"/api/api-keys/{revoked['id']}", headers=bearer(alice))
    assert gone.status_code == 204

    response = await harness.client.get(REVIEW, headers=bearer(admin))

    assert response.status_code == 200, response.text
    review = response.json()
    assert set(review) == {
        "unused",
        "unrestricted",
        "expiringSoon",
        "broadScopes",
        "legacy",
        "beyondExpiryPolicy",
        "totals",
    }
    assert review["totals"] == {
        "unused": 1,
        "unrestricted": 1,
        "expiringSoon": 1,
        "broadScopes": 2,
        "legacy": 0,
        "beyondExpiryPolicy": 0,
    }
    assert review["legacy"] == []  # nothing imported from UTMStack
    assert review["beyondExpiryPolicy"] == []
    assert names(review, "unused") == {"stale"}
    assert names(review, "unrestricted") == {"open"}
    assert names(review, "expiringSoon") == {"expiring"}
    assert names(review, "broadScopes") == {"writer", "admin-scope"}
    [stale] = review["unused"]
    assert stale["lastUsedAt"] is None
    assert "key" not in stale

    narrower = await harness.client.get(
        REVIEW, params={"unusedDays": 40, "expiringDays": 3}, headers=bearer(admin)
    )
    assert narrower.status_code == 200
    assert names(narrower.json(), "unused") == set()
    assert names(narrower.json(), "expiringSoon") == set()

    wider = await harness.client.get(
        REVIEW, params={"unusedDays": 1, "expiringDays": 90}, headers=bearer(admin)
    )
    # "used" was used just now; keys expiring within 90 days include the 90-day ones.
    assert "used" not in names(wider.json(), "unused")
    assert names(wider.json(), "expiringSoon") >= {"expiring", "stale", "used", "open"}

    # At most `limit` keys a section, the oldest first; the totals count them all.
    limited = await harness.client.get(
        REVIEW, params={"expiringDays": 90, "limit": 2}, headers=bearer(admin)
    )
    assert limited.status_code == 200
    listed = [key["name"] for key in limited.json()["expiringSoon"]]
    assert listed == ["stale", "used"]
    assert limited.json()["totals"]["expiringSoon"] == 6
    for bad in ("0", "5001", "x"):
        refused = await harness.client.get(REVIEW, params={"limit": bad}, headers=bearer(admin))
        assert refused.status_code == 422, bad


async def test_review_counts_last_use_not_creation(harness: Harness, admin_token: str) -> None:
    """A key used long ago but not since counts as unused once the clock passes unusedDays."""
    key = await harness.create_key(admin_token, "once", scopes=["read"], days=90)
    response = await harness.client.get("/api/account", headers={"Utm-Api-Key": key["key"]})
    assert response.status_code == 200
    await harness.services.usage.flush()

    harness.clock.advance(days=10)
    admin = await harness.login("admin", ADMIN_PASSWORD)
    not_yet = await harness.client.get(REVIEW, params={"unusedDays": 11}, headers=bearer(admin))
    idle = await harness.client.get(REVIEW, params={"unusedDays": 9}, headers=bearer(admin))

    assert names(not_yet.json(), "unused") == set()
    assert names(idle.json(), "unused") == {"once"}
    [reviewed] = idle.json()["unused"]
    assert reviewed["lastUsedAt"] is not None


async def test_review_is_for_admins(harness: Harness, user_token: str) -> None:
    """Ordinary users get 403 from the key review; anonymous callers 401."""
    as_user = await harness.client.get(REVIEW, headers=bearer(user_token))
    anonymous = await harness.client.get(REVIEW)

    assert as_user.status_code == 403, as_user.text
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"unusedDays": 0}, "unusedDays"),
        ({"unusedDays": -1}, "unusedDays"),
        ({"unusedDays": 3651}, "unusedDays"),
        ({"expiringDays": -1}, "expiringDays"),
        ({"unusedDays": "soon"}, "unusedDays"),
    ],
)
async def test_review_rejects_bad_parameters_with_422(
    harness: Harness, admin_token: str, params: dict[str, Any], field: str
) -> None:
    """Out-of-range review parameters are a 422 naming the parameter."""
    response = await harness.client.get(REVIEW, params=params, headers=bearer(admin_token))

    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["fieldErrors"]]


async def test_second_factor_checks_have_a_counter_of_their_own(harness: Harness) -> None:
    """The metrics review: a login's success is counted at its password, and its second
    step (right, wrong or replayed codes) showed in no metric, so guessing codes was
    invisible in Prometheus. ``authgate_second_factor_total`` counts the audit trail's
    second-factor records."""
    before = await scrape(harness)
    audit = harness.services.audit
    audit.record(EventType.TFA_FAILURE, "failure", reason=Reason.WRONG_CODE)
    audit.record(EventType.TFA_FAILURE, "failure", reason=Reason.WRONG_CODE)
    audit.record(EventType.TFA_SUCCESS, "success")
    await audit.flush()
    after = await scrape(harness)

    def moved(**labels: str) -> float:
        metric = "authgate_second_factor_total"
        return sample(after, metric, **labels) - sample(before, metric, **labels)

    assert moved(outcome="failure", reason=Reason.WRONG_CODE.label) == 2
    assert moved(outcome="success", reason="none") == 1
