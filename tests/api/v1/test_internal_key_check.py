"""UTMStack v12's internal key check: ``POST /api/v1/api-keys/authenticate``.

The contract follows v12's log ingestion, ``log-input/auth/upstream.go`` (it sends the
service secret in ``X-Internal-Key`` and ``{"apiKey", "clientIp"}``, and reads
``{"userId", "login", "tenantId"}``), and v12's ``backend/modules/iam`` (routes.go,
handler/api_key.go, usecase/api_key.go) with ``backend/pkg/http/middleware/auth.go``:
401 "invalid api key"; 401 without a working internal credential (its auth middleware),
403 "internal-only endpoint" for a user's credential. authgate's service credentials are
its own (issue 17, "Better than v12"): each named, hashed, allowed named endpoints,
rotatable, revocable and audited; the attacks below hold them to it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import update

from authgate.app import create_app
from authgate.exceptions import Conflict, ValidationFailed
from authgate.reasons import Reason
from authgate.security.service_credentials import credential_digest
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import ServiceCredential, User
from authgate.storage.paging import PageRequest
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, FakeClock, Harness, bearer, test_settings

PATH = "/api/v1/api-keys/authenticate"
LOG_INPUT = "utmstack-log-input"


async def service_credential(harness: Harness, name: str = LOG_INPUT) -> str:
    created = await harness.services.service_credentials.create(name, ["api-keys.authenticate"])
    return created.plaintext


async def alice_key(harness: Harness, **fields: Any) -> str:
    await harness.create_user("alice", USER_PASSWORD)
    token = await harness.login("alice", USER_PASSWORD)
    created = await harness.create_key(token, **fields)
    key: str = created["key"]
    return key


async def check(
    harness: Harness, internal_key: str | None, api_key: str, client_ip: str = "127.0.0.1"
) -> httpx2.Response:
    headers = {"X-Internal-Key": internal_key} if internal_key is not None else {}
    return await harness.client.post(
        PATH, json={"apiKey": api_key, "clientIp": client_ip}, headers=headers
    )


async def audited(harness: Harness, event_type: str) -> list[Any]:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=(event_type,)), PageRequest(size=100)
    )
    return list(page.items)


# -- the contract ----------------------------------------------------------------------


async def test_a_valid_key_answers_the_owner(harness: Harness) -> None:
    """log-input/auth/upstream.go: 200 {userId, login, tenantId}; userId is the owner's
    public UUID (users.public_id), tenantId UTMStack's single tenant (authgate has no
    tenants; log-input reads a null as "" and then keeps the pusher's own tenantId)."""
    internal = await service_credential(harness)
    key = await alice_key(harness)
    response = await check(harness, internal, key, "127.0.0.1")
    assert response.status_code == 200, response.text
    body = response.json()
    async with harness.services.db.session() as session:
        public_id = await session.scalar(
            User.__table__.select().with_only_columns(User.public_id).where(User.login == "alice")
        )
    assert body == {
        "userId": public_id,
        "login": "alice",
        "tenantId": "ce66672c-e36d-4761-a8c8-90058fee1a24",
    }
    # Unknown fields are ignored; the key's use is in its usage log, from clientIp.
    extra = await harness.client.post(
        PATH,
        json={"apiKey": key, "clientIp": "::1", "tenant": "x"},
        headers={"X-Internal-Key": internal},
    )
    assert extra.status_code == 200


async def test_the_tenant_id_is_configurable(tmp_path: Path, clock: FakeClock) -> None:
    """tenantId is AUTHGATE_V12_TENANT_ID (v12's MSSP tenants are out of scope)."""
    app = create_app(test_settings(tmp_path / "data", v12_tenant_id="tenant-1"), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            harness = Harness(app=app, services=app.state.services, client=client, clock=clock)
            internal = await service_credential(harness)
            key = await alice_key(harness)
            response = await check(harness, internal, key)
    assert response.status_code == 200, response.text
    assert response.json()["tenantId"] == "tenant-1"


async def test_missing_internal_key_is_401_before_the_body_is_read(harness: Harness) -> None:
    """middleware/auth.go Authenticate: 401 {"error"} without X-Internal-Key (nor any
    other credential), whatever the body."""
    response = await harness.client.post(PATH, content=b"{not json")
    assert response.status_code == 401
    assert response.json() == {"error": "missing internal key"}
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["internal_key_missing"]


async def test_a_missing_or_bad_client_ip_is_no_address(harness: Harness) -> None:
    """usecase/api_key.go ipAllowed: an empty allow list passes any address, none
    included; a key with an allow list is refused without an address it contains
    (never taken as inside it), 401 and audited as for a disallowed address."""
    internal = await service_credential(harness)
    restricted = await alice_key(harness)  # allowed from 127.0.0.1 and ::1 only
    token = await harness.login("alice", USER_PASSWORD)
    open_key = (await harness.create_key(token, "anywhere", allowedIp=[]))["key"]
    for client_ip in (None, "", "not-an-address", "127.0.0.1/8"):
        body: dict[str, str] = {} if client_ip is None else {"clientIp": client_ip}
        for key, status in ((open_key, 200), (restricted, 401)):
            response = await harness.client.post(
                PATH, json={"apiKey": key, **body}, headers={"X-Internal-Key": internal}
            )
            assert response.status_code == status, (client_ip, response.text)
    failures = await audited(harness, "API_KEY_ACCESS_FAILURE")
    assert {entry.reason for entry in failures} == {"ip_not_allowed"}
    assert len(failures) == 4


# -- attacks on the service credential ---------------------------------------------------


async def test_attack_a_wrong_secret_is_401_and_audited(harness: Harness) -> None:
    internal = await service_credential(harness)
    key = await alice_key(harness)
    forged = internal[:-4] + ("AAAA" if not internal.endswith("AAAA") else "BBBB")
    response = await check(harness, forged, key)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid internal key"}
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["wrong_internal_key"]
    assert refused[0].client_ip == "127.0.0.1"  # the calling service, not clientIp


async def test_attack_api_keys_and_tokens_are_not_service_credentials(harness: Harness) -> None:
    """Neither a user's API key nor a user's JWT is accepted in X-Internal-Key (v12's
    shared secret is the only thing it checks; here only an ags_ credential is)."""
    key = await alice_key(harness)
    token = await harness.login("alice", USER_PASSWORD)
    await harness.create_user("root", ADMIN_PASSWORD, admin=True)
    admin_token = await harness.login("root", ADMIN_PASSWORD)
    for wrong in (key, token, admin_token, f"Bearer {admin_token}", ""):
        response = await check(harness, wrong, key)
        assert response.status_code == 401, wrong
        assert set(response.json()) == {"error"}


async def test_attack_a_users_credential_is_internal_only(harness: Harness) -> None:
    """middleware/auth.go: a user's token or API key passes Authenticate (401 when it
    is bad), then RequireInternal answers 403 "internal-only endpoint"; each refusal
    is audited as the internal call it was."""
    key = await alice_key(harness)
    await harness.create_user("root", ADMIN_PASSWORD, admin=True)
    admin_token = await harness.login("root", ADMIN_PASSWORD)
    body = {"apiKey": key, "clientIp": "127.0.0.1"}
    for headers in (bearer(admin_token), {"Utm-Api-Key": key}):
        response = await harness.client.post(PATH, json=body, headers=headers)
        assert response.status_code == 403, headers
        assert response.json() == {"error": "internal-only endpoint"}
    forged = await harness.client.post(PATH, json=body, headers=bearer(admin_token + "x"))
    assert forged.status_code == 401
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["internal_key_missing"] * 3


async def test_attack_a_revoked_credential_is_refused_at_once(harness: Harness) -> None:
    created = await harness.services.service_credentials.create(
        LOG_INPUT, ["api-keys.authenticate"]
    )
    key = await alice_key(harness)
    assert (await check(harness, created.plaintext, key)).status_code == 200
    await harness.services.service_credentials.revoke(created.view.id)
    response = await check(harness, created.plaintext, key)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid internal key"}
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["internal_key_revoked"]


async def test_attack_a_credential_not_allowed_the_endpoint_is_403(harness: Harness) -> None:
    """A credential is allowed named internal endpoints only (v12's one secret passes
    every internal check). Stored with another endpoint (one a later version adds)."""
    created = await harness.services.service_credentials.create(
        LOG_INPUT, ["api-keys.authenticate"]
    )
    async with harness.services.db.transaction() as session:
        await session.execute(
            update(ServiceCredential)
            .where(ServiceCredential.credential_id == created.view.id)
            .values(endpoints="reports.export")
        )
    key = await alice_key(harness)
    response = await check(harness, created.plaintext, key)
    assert response.status_code == 403
    assert response.json() == {"error": "internal key not allowed for this endpoint"}
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["endpoint_not_allowed"]


async def test_attack_guessing_credentials_gets_the_caller_blocked(harness: Harness) -> None:
    """Bad service credentials count against the caller's address like bad API keys:
    past key_ip_max_failures the address is refused (429) even with the right one."""
    internal = await service_credential(harness)
    key = await alice_key(harness)
    limit = harness.services.settings.key_abuse.max_failures
    for attempt in range(limit):
        guess = f"ags_{internal[4:16]}_{attempt:043d}"
        assert (await check(harness, guess, key)).status_code == 401
    blocked = await check(harness, internal, key)
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    assert set(blocked.json()) == {"error"}


# -- the key, checked as if its client sent it -------------------------------------------


async def test_attack_a_key_from_a_disallowed_client_ip_is_401(harness: Harness) -> None:
    """The key's allow list holds against clientIp (the key's client), not against the
    service calling; the precise reason goes to the audit trail."""
    internal = await service_credential(harness)
    key = await alice_key(harness)  # allowed from 127.0.0.1 and ::1 only
    response = await check(harness, internal, key, "203.0.113.9")
    assert response.status_code == 401
    assert response.json() == {"error": "invalid api key"}
    failures = await audited(harness, "API_KEY_ACCESS_FAILURE")
    assert [(entry.reason, entry.client_ip) for entry in failures] == [
        ("ip_not_allowed", "203.0.113.9")
    ]


async def test_attack_revoked_and_expired_keys_are_401(harness: Harness) -> None:
    internal = await service_credential(harness)
    await harness.create_user("alice", USER_PASSWORD)
    token = await harness.login("alice", USER_PASSWORD)
    revoked = await harness.create_key(token, "to-revoke")
    deleted = await harness.client.delete(f"/api/api-keys/{revoked['id']}", headers=bearer(token))
    assert deleted.status_code in (200, 204), deleted.text
    expiring = await harness.create_key(token, "short", days=1)
    assert (await check(harness, internal, expiring["key"])).status_code == 200
    harness.clock.advance(days=2)
    for key in (revoked["key"], expiring["key"], "agk_random", "eyJhbGciOi.x.y"):
        response = await check(harness, internal, key)
        assert response.status_code == 401, key
        assert response.json() == {"error": "invalid api key"}


async def test_a_key_over_its_own_rate_limit_is_429_with_retry_after(harness: Harness) -> None:
    """The rate-limit review: the key's own limit counts here as on every route (one
    budget per key), and a key over it is 429 with ``Retry-After``, as a throttled
    caller is, not 401 (which would read as a bad key); the README said 401."""
    internal = await service_credential(harness)
    key = await alice_key(harness, rateLimit="2/minute")
    assert [(await check(harness, internal, key)).status_code for _ in range(2)] == [200, 200]
    over = await check(harness, internal, key)
    assert over.status_code == 429
    assert int(over.headers["Retry-After"]) > 0
    assert over.json() == {"error": "API key rate limit exceeded"}


async def test_attack_bad_keys_are_counted_against_the_client_ip(harness: Harness) -> None:
    """Not an open oracle: bad keys block the clientIp they are reported for, as
    forward-auth blocks the address its proxy reports; other clients are unaffected."""
    internal = await service_credential(harness)
    key = await alice_key(harness, allowedIp=[])
    limit = harness.services.settings.key_abuse.max_failures
    for _ in range(limit):
        bad = await check(harness, internal, "agk_" + "x" * 62, "198.51.100.7")
        assert bad.status_code == 401
    blocked = await check(harness, internal, key, "198.51.100.7")
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    assert (await check(harness, internal, key, "198.51.100.8")).status_code == 200


async def test_a_trusted_proxys_address_is_never_blocked(tmp_path: Path, clock: FakeClock) -> None:
    """UTMStack replay: v12's log-input reports its peer as clientIp; behind a proxy or
    NAT that is one address for every key, so 20 junk keys from anyone blocked every
    key for 10 minutes. An address in AUTHGATE_TRUSTED_PROXIES stands for the clients
    behind it: its bad keys are refused and audited one by one, never blocked."""
    settings = test_settings(tmp_path / "data", trusted_proxies=["10.0.0.0/8"])
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            harness = Harness(app=app, services=app.state.services, client=client, clock=clock)
            internal = await service_credential(harness)
            key = await alice_key(harness, allowedIp=[])
            limit = harness.services.settings.key_abuse.max_failures
            for _ in range(limit * 2):
                bad = await check(harness, internal, "agk_" + "x" * 62, "10.1.2.3")
                assert bad.status_code == 401
            assert (await check(harness, internal, key, "10.1.2.3")).status_code == 200
            refused = await audited(harness, "API_KEY_ACCESS_FAILURE")
            assert len(refused) == limit * 2
            assert not await audited(harness, "IP_BLOCKED")
            # Any other address is still blocked past the limit.
            for _ in range(limit):
                await check(harness, internal, "agk_" + "x" * 62, "198.51.100.7")
            assert (await check(harness, internal, key, "198.51.100.7")).status_code == 429


async def test_trusting_an_address_lifts_its_block(tmp_path: Path, clock: FakeClock) -> None:
    """The README's advice is to trust log-input's proxy address when its keys are
    refused for a block: a block already in force (stored, loaded at the restart that
    applies the setting) must not keep refusing that address's good keys for 10 min."""
    data = tmp_path / "data"
    key = ""
    for trusted in ([], ["10.0.0.0/8"]):
        app = create_app(test_settings(data, trusted_proxies=trusted), clock=clock)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                harness = Harness(app=app, services=app.state.services, client=client, clock=clock)
                internal = await service_credential(harness, f"log-input-{len(trusted)}")
                if not trusted:
                    key = await alice_key(harness, allowedIp=[])
                    for _ in range(harness.services.settings.key_abuse.max_failures):
                        await check(harness, internal, "agk_" + "x" * 62, "10.1.2.3")
                    assert (await check(harness, internal, key, "10.1.2.3")).status_code == 429
                else:
                    assert harness.services.address_blocker.blocked_count() == 1
                    assert (await check(harness, internal, key, "10.1.2.3")).status_code == 200


# -- rotation --------------------------------------------------------------------------


async def test_rotation_without_grace_invalidates_the_old_secret_at_once(
    harness: Harness,
) -> None:
    created = await harness.services.service_credentials.create(
        LOG_INPUT, ["api-keys.authenticate"]
    )
    key = await alice_key(harness)
    rotated = await harness.services.service_credentials.rotate(created.view.id)
    assert rotated.plaintext != created.plaintext
    assert rotated.view.id == created.view.id
    assert (await check(harness, created.plaintext, key)).status_code == 401
    assert (await check(harness, rotated.plaintext, key)).status_code == 200


async def test_rotation_with_grace_keeps_the_old_secret_until_it_ends(harness: Harness) -> None:
    created = await harness.services.service_credentials.create(
        LOG_INPUT, ["api-keys.authenticate"]
    )
    key = await alice_key(harness)
    rotated = await harness.services.service_credentials.rotate(
        created.view.id, grace=timedelta(hours=1)
    )
    assert (await check(harness, created.plaintext, key)).status_code == 200
    assert (await check(harness, rotated.plaintext, key)).status_code == 200
    harness.clock.advance(hours=1, seconds=1)
    assert (await check(harness, created.plaintext, key)).status_code == 401
    assert (await check(harness, rotated.plaintext, key)).status_code == 200


async def test_last_use_is_recorded_to_the_minute(harness: Harness) -> None:
    """Not a database write per call: at most one per minute and credential."""
    created = await harness.services.service_credentials.create(
        LOG_INPUT, ["api-keys.authenticate"]
    )
    key = await alice_key(harness)
    first = harness.clock()
    assert (await check(harness, created.plaintext, key)).status_code == 200
    harness.clock.advance(seconds=30)
    assert (await check(harness, created.plaintext, key)).status_code == 200
    assert (await harness.services.service_credentials.get(created.view.id)).last_used_at == first
    harness.clock.advance(seconds=31)
    assert (await check(harness, created.plaintext, key)).status_code == 200
    view = await harness.services.service_credentials.get(created.view.id)
    assert view.last_used_at == harness.clock()


async def test_the_fixed_path_is_matched_before_any_key_id_template(harness: Harness) -> None:
    """POST /api/v1/api-keys/authenticate must not be taken for a key id by a
    /api/v1/api-keys/{id} route: it is registered before every such route."""
    paths = [getattr(route, "path", "") for route in harness.app.routes]
    internal = paths.index(PATH)
    templates = [i for i, path in enumerate(paths) if path.startswith("/api/v1/api-keys/{")]
    assert all(internal < index for index in templates)


# -- adopted secrets (UTMStack's one INTERNAL_KEY) -----------------------------------------
#
# UTMStack replay: v12's installer (installer/docker/compose.go) gives log-input,
# agent-manager and the backend one installation-wide INTERNAL_KEY, and log-input sends
# it as X-Internal-Key. A credential adopts it (found by its keyed hash, no public id).

# As UTMStack's installer makes one: 32 characters of [A-Za-z0-9].
INSTALLATION_KEY = "q3ZbT8mWx1LcR7vN0pKd5hYs2GfJ9aEu"
NEXT_KEY = "H4kPz9WcQ2nVb7XsL1mT8rYd3FgJ6aNe"


async def adopted(harness: Harness, secret: str = INSTALLATION_KEY) -> str:
    view = await harness.services.service_credentials.adopt(
        LOG_INPUT, ["api-keys.authenticate"], secret
    )
    assert view.adopted
    return view.id


async def test_an_adopted_secret_works_as_log_input_sends_it(harness: Harness) -> None:
    """The existing INTERNAL_KEY, unchanged, passes the check; its use is recorded and
    the service named in the audit trail, as for a generated credential."""
    credential_id = await adopted(harness)
    key = await alice_key(harness)
    response = await check(harness, INSTALLATION_KEY, key)
    assert response.status_code == 200, response.text
    assert response.json()["login"] == "alice"
    view = await harness.services.service_credentials.get(credential_id)
    assert view.last_used_at == harness.clock()
    assert view.adopted
    async with harness.services.db.session() as session:
        stored = (
            await session.execute(
                ServiceCredential.__table__.select().where(
                    ServiceCredential.credential_id == credential_id
                )
            )
        ).one()
    assert INSTALLATION_KEY not in repr(tuple(stored))  # only its keyed hash is kept


async def test_attack_a_wrong_adopted_secret_is_401_and_audited(harness: Harness) -> None:
    await adopted(harness)
    key = await alice_key(harness)
    for wrong in (INSTALLATION_KEY[:-1] + "x", NEXT_KEY, INSTALLATION_KEY + "x", " " * 40):
        response = await check(harness, wrong, key)
        assert response.status_code == 401, wrong
        assert response.json() == {"error": "invalid internal key"}
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["unknown_internal_key"] * 4


async def test_attack_a_revoked_adopted_secret_is_refused_at_once_and_never_adopted_again(
    harness: Harness,
) -> None:
    credential_id = await adopted(harness)
    key = await alice_key(harness)
    assert (await check(harness, INSTALLATION_KEY, key)).status_code == 200
    await harness.services.service_credentials.revoke(credential_id)
    response = await check(harness, INSTALLATION_KEY, key)
    assert response.status_code == 401
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["internal_key_revoked"]
    with pytest.raises(Conflict) as taken:
        await harness.services.service_credentials.adopt(
            "again", ["api-keys.authenticate"], INSTALLATION_KEY
        )
    assert taken.value.reason == Reason.SERVICE_SECRET_IN_USE
    assert (await check(harness, INSTALLATION_KEY, key)).status_code == 401


async def test_attack_an_adopted_credential_keeps_its_endpoint_allow_list(
    harness: Harness,
) -> None:
    credential_id = await adopted(harness)
    async with harness.services.db.transaction() as session:
        await session.execute(
            update(ServiceCredential)
            .where(ServiceCredential.credential_id == credential_id)
            .values(endpoints="reports.export")
        )
    response = await check(harness, INSTALLATION_KEY, await alice_key(harness))
    assert response.status_code == 403
    refused = await audited(harness, "INTERNAL_CALL_REFUSED")
    assert [entry.reason for entry in refused] == ["endpoint_not_allowed"]


async def test_rotating_an_adopted_secret_with_grace(harness: Harness) -> None:
    """To another adopted secret: the old one works until the grace ends. Then to a
    generated one: the adopted one still works for its grace, found by its hash."""
    credentials = harness.services.service_credentials
    credential_id = await adopted(harness)
    key = await alice_key(harness)
    view = await credentials.rotate_to(credential_id, NEXT_KEY, grace=timedelta(hours=1))
    assert view.adopted
    assert view.previous_valid_until is not None
    assert (await check(harness, INSTALLATION_KEY, key)).status_code == 200
    assert (await check(harness, NEXT_KEY, key)).status_code == 200
    harness.clock.advance(hours=1, seconds=1)
    assert (await check(harness, INSTALLATION_KEY, key)).status_code == 401
    assert (await check(harness, NEXT_KEY, key)).status_code == 200

    generated = await credentials.rotate(credential_id, grace=timedelta(hours=1))
    assert not generated.view.adopted
    assert (await check(harness, NEXT_KEY, key)).status_code == 200
    assert (await check(harness, generated.plaintext, key)).status_code == 200
    harness.clock.advance(hours=1, seconds=1)
    assert (await check(harness, NEXT_KEY, key)).status_code == 401
    assert (await check(harness, generated.plaintext, key)).status_code == 200


async def test_a_generated_credential_may_move_to_the_services_secret(harness: Harness) -> None:
    """rotate --secret-stdin on a generated credential: the ags_ value works for the
    grace (by its id), the adopted one from now on; without grace the old one stops."""
    credentials = harness.services.service_credentials
    created = await credentials.create(LOG_INPUT, ["api-keys.authenticate"])
    key = await alice_key(harness)
    await credentials.rotate_to(created.view.id, INSTALLATION_KEY, grace=timedelta(hours=1))
    assert (await check(harness, created.plaintext, key)).status_code == 200
    assert (await check(harness, INSTALLATION_KEY, key)).status_code == 200
    await credentials.rotate_to(created.view.id, NEXT_KEY)
    for old in (created.plaintext, INSTALLATION_KEY):
        assert (await check(harness, old, key)).status_code == 401
    assert (await check(harness, NEXT_KEY, key)).status_code == 200


async def test_weak_or_reused_secrets_are_refused(harness: Harness) -> None:
    credentials = harness.services.service_credentials
    for weak in ("short-secret", "a" * 40, "Passw0rd!" * 4, "ags_" + INSTALLATION_KEY):
        with pytest.raises(ValidationFailed) as refused:
            await credentials.adopt(LOG_INPUT, ["api-keys.authenticate"], weak)
        assert [error.field for error in refused.value.field_errors] == ["secret"]
        assert weak not in refused.value.message
    credential_id = await adopted(harness)
    with pytest.raises(Conflict):  # the same secret for a second credential
        await credentials.adopt("other", ["api-keys.authenticate"], INSTALLATION_KEY)
    with pytest.raises(Conflict):  # nor as its own new secret
        await credentials.rotate_to(credential_id, INSTALLATION_KEY)
    with pytest.raises(ValidationFailed):
        await credentials.rotate_to(credential_id, "a" * 40)
    assert [view.name for view in await credentials.list_all(include_revoked=True)] == [LOG_INPUT]


async def test_attack_an_ags_value_is_never_looked_up_by_its_hash(harness: Harness) -> None:
    """A value that starts with ags_ takes the id path only: even a row whose lookup
    hash is that value's (planted past the checks) does not answer for it, so an
    adopted secret can neither collide with nor shadow a generated credential."""
    created = await harness.services.service_credentials.create(
        "generated", ["api-keys.authenticate"]
    )
    planted = "ags_" + "Zx81QmT0aB3c" + "_" + "4fGq7Lk2Np9RsTuVwXyZ01q3ZbT8mWx1LcR7vN0pKd5"
    digest = credential_digest(harness.services.service_credentials._pepper, planted)
    await adopted(harness)
    async with harness.services.db.transaction() as session:
        await session.execute(
            update(ServiceCredential)
            .where(ServiceCredential.name == LOG_INPUT)
            .values(secret_hash=digest, secret_lookup=digest)
        )
    key = await alice_key(harness)
    assert (await check(harness, planted, key)).status_code == 401
    assert (await check(harness, created.plaintext, key)).status_code == 200
    with pytest.raises(ValidationFailed):
        await harness.services.service_credentials.adopt(
            "copy", ["api-keys.authenticate"], created.plaintext
        )


async def test_an_adopted_secret_is_never_in_answers_logs_or_the_audit_trail(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credential_id = await adopted(harness)
    key = await alice_key(harness)
    await check(harness, INSTALLATION_KEY, key)
    await check(harness, INSTALLATION_KEY[:-1] + "x", key)
    await harness.services.service_credentials.rotate_to(
        credential_id, NEXT_KEY, grace=timedelta(hours=1)
    )
    await harness.create_user("root", ADMIN_PASSWORD, admin=True)
    admin_token = await harness.login("root", ADMIN_PASSWORD)
    listed = await harness.client.get(
        "/api/service-credentials", params={"includeRevoked": "true"}, headers=bearer(admin_token)
    )
    assert listed.status_code == 200
    assert [c["adopted"] for c in listed.json()] == [True]
    await harness.services.service_credentials.revoke(credential_id)
    await harness.services.audit.flush()
    events = await harness.services.audit.search(AuditFilter(), PageRequest(size=500))
    created = [e for e in events.items if e.event_type == "SERVICE_CREDENTIAL_CREATED"]
    assert (created[0].details or {}).get("adopted") is True
    seen = repr(list(events.items)) + listed.text + caplog.text
    for secret in (INSTALLATION_KEY, NEXT_KEY, INSTALLATION_KEY[:-1] + "x"):
        assert secret not in seen
