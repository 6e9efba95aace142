"""Contract tests for issue 13, section 5: small items of UTMStack's wire contract, each
from its source (utmstack/UTMStack v10/v11 backend and frontend)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.api.test_contract_utmstack_users import harness_with
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer, test_settings


async def test_get_authenticate_is_raw_text(harness: Harness) -> None:
    """AccountResource.isAuthenticated returns ResponseEntity<String>: Spring writes the
    login as is (``admin``), not as a JSON string."""
    await harness.create_user("alice")
    token = await harness.login("alice", USER_PASSWORD)
    response = await harness.client.get("/api/authenticate", headers=bearer(token))
    assert (response.status_code, response.text) == (200, "alice")
    assert response.headers["content-type"].startswith("text/plain")
    assert (await harness.client.get("/api/authenticate")).status_code == 401


async def test_failures_carry_x_utmstack_params(harness: Harness) -> None:
    """JHipster's HeaderUtil.createFailureAlert sets X-UtmStack-error and
    X-UtmStack-params together (web/rest/util/HeaderUtil.java)."""
    response = await harness.client.get("/api/account")
    assert response.headers["X-UtmStack-error"]
    assert response.headers["X-UtmStack-params"] == "credentials_missing"


async def test_login_vm_password_size_is_400_and_counts_nothing(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """LoginVM: @Size(min = 4, max = 100) on the password → 400 from @Valid, before any
    credential check: nothing counted, throttled or audited. (100, or the password
    policy's maximum when higher: here the policy is set to UTMStack's 100.)"""
    settings = test_settings(tmp_path / "data", database_url=database_url, password_max_length=100)
    async with harness_with(settings, clock) as harness:
        await harness.create_user("alice")
        statuses = set()
        for password in ("abc", "x" * 101) * 10:
            response = await harness.client.post(
                "/api/authenticate", json={"username": "alice", "password": password}
            )
            statuses.add(response.status_code)
        assert statuses == {400}
        assert await harness.login("alice", USER_PASSWORD)
        await harness.services.audit.flush()
        failures = await harness.services.audit.search(
            AuditFilter(event_types=("AUTH_FAILURE",)), PageRequest(size=10)
        )
        assert failures.total == 0


async def test_login_password_limit_follows_a_longer_policy(harness: Harness) -> None:
    """With the default policy (128 characters) a 101-character password is a credential
    check (401), since such a password may be a user's; 129 is 400."""
    await harness.create_user("alice")
    long_ok = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": "x" * 101}
    )
    too_long = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": "x" * 129}
    )
    assert (long_ok.status_code, too_long.status_code) == (401, 400)


def _expiry(harness: Harness) -> str:
    return (harness.clock() + timedelta(days=30)).strftime("%Y-%m-%dT00:00:00.000Z")


async def test_allowed_ip_cidr_host_bits_and_comma_joined(harness: Harness) -> None:
    """v11 ApiKeyService matches IPv4 CIDRs with host bits through SubnetUtils
    (``10.0.0.5/24`` is 10.0.0.0/24) and stores ``allowed_ip`` comma-joined (ApiKey
    entity); authgate stores the network, a bare address is one host (/32, /128), and a
    comma-joined string is accepted for the list."""
    await harness.create_user("alice")
    token = bearer(await harness.login("alice", USER_PASSWORD))
    created = await harness.client.post(
        "/api/api-keys",
        json={
            "name": "joined",
            "expiresAt": _expiry(harness),
            "allowedIp": "10.0.0.5/24, 2001:db8::7/32,203.0.113.9",
        },
        headers=token,
    )
    assert created.status_code == 201, created.text
    assert created.json()["allowedIp"] == ["10.0.0.0/24", "2001:db8::/32", "203.0.113.9"]

    listed = await harness.client.post(
        "/api/api-keys",
        json={"name": "list", "expiresAt": _expiry(harness), "allowedIp": ["192.168.1.77/16"]},
        headers=token,
    )
    assert listed.json()["allowedIp"] == ["192.168.0.0/16"]
    duplicate = await harness.client.post(
        "/api/api-keys",
        json={"name": "dup", "expiresAt": _expiry(harness), "allowedIp": "10.0.0.0/8,10.1.2.3/8"},
        headers=token,
    )
    assert duplicate.status_code == 422
    assert duplicate.json()["fieldErrors"][0]["message"] == "This IP is already added"
