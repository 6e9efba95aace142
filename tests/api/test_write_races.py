"""Writes that race on one database (two nodes, or two workers) end as if one came after
the other: each test runs the second request while the first one's transaction is open,
at the point where it has read what it checks, and looks at the outcome."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import httpx2
import pytest

from authgate.exceptions import Conflict
from authgate.security.second_factor import totp_code, totp_step
from authgate.services import accounts, users
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.password_resets import ResetKeyInvalid
from authgate.services.second_factor import SecondFactorService
from authgate.services.service_credentials import CreatedCredential, InternalEndpoint
from authgate.services.user_fields import NewUser
from authgate.storage.api_key_repository import ApiKeyRepository
from authgate.storage.paging import PageRequest
from authgate.storage.repositories import UserRepository
from authgate.storage.second_factor_repository import SecondFactorRepository
from authgate.storage.service_credential_repository import ServiceCredentialRepository
from tests.api.test_api_keys import KEYS, key_header
from tests.conftest import USER_PASSWORD, Harness, bearer, format_instant

# How long the second request gets to finish inside the first one's transaction: one
# that waits for a lock does not finish then, and goes on once the first commits.
INSIDE_SECONDS = 0.5
OUTSIDE_SECONDS = 10.0  # a safety net once the first has committed, not a measured limit
LOOPBACK = ipaddress.ip_address("127.0.0.1")

Request = Callable[[], Coroutine[Any, Any, Any]]


class Interleaving:
    """The second request, started inside the first one's transaction by a wrapped step of
    it (``wrap``), and its outcome once both are done (``second``)."""

    def __init__(self, request: Request, *, on_call: int = 1) -> None:
        self._request = request
        self._task: asyncio.Task[Any] | None = None
        self._calls_left = on_call  # the wrapped call that starts the second request
        self.finished_inside = False  # the second was done before the first went on

    def wrap(self, step: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def with_second_request(*args: Any, **kwargs: Any) -> Any:
            result = await step(*args, **kwargs)
            self._calls_left -= 1
            if self._task is None and self._calls_left == 0:
                self._task = asyncio.ensure_future(self._request())
                await asyncio.wait({self._task}, timeout=INSIDE_SECONDS)
                self.finished_inside = self._task.done()
            return result

        return with_second_request

    def wrap_methods(self, monkeypatch: pytest.MonkeyPatch, owner: type[Any], *names: str) -> None:
        """Wrap these methods of a class: the first call of any starts the second request."""
        for name in names:
            monkeypatch.setattr(owner, name, self.wrap(getattr(owner, name)))

    async def second(self) -> Any:
        assert self._task is not None, "the wrapped step never ran"
        return await asyncio.wait_for(self._task, OUTSIDE_SECONDS)


def key_body(harness: Harness, name: str) -> dict[str, Any]:
    expires_at = format_instant(harness.clock() + timedelta(days=1))
    return {"name": name, "allowedIp": ["127.0.0.1", "::1"], "expiresAt": expires_at}


REMEDIATIONS = {
    # what the admin (or the user) does; the step the second request runs after
    "password_reset": (users, "revoke_owner_keys"),
    "logout_all": (accounts, "revoke_owner_keys"),
    "deactivation": (users, "suspend_owner_keys"),
}


async def remediate(harness: Harness, how: str, admin_token: str, user_token: str) -> None:
    if how == "password_reset":
        response = await harness.client.put(
            "/api/users/alice/password",
            json={"newPassword": "a-fresh-password-for-her", "revokeApiKeys": True},
            headers=bearer(admin_token),
        )
    elif how == "logout_all":
        response = await harness.client.post(
            "/api/account/logout-all", json={"revokeApiKeys": True}, headers=bearer(user_token)
        )
    else:
        response = await harness.client.put(
            "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
        )
    assert response.status_code in (200, 204), response.text


@pytest.mark.parametrize("how", sorted(REMEDIATIONS))
async def test_a_key_created_during_a_remediation_does_not_survive_it(
    harness: Harness,
    admin_token: str,
    user_token: str,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """A key created with the user's session while a password reset or "log out
    everywhere" revokes their keys (or a deactivation suspends them) is refused (401:
    the session ended) or revoked/suspended with the others, never left working."""
    await harness.create_key(user_token, name="before")

    async def create() -> httpx2.Response:
        return await harness.client.post(
            KEYS, json=key_body(harness, "during"), headers=bearer(user_token)
        )

    interleaving = Interleaving(create)
    module, step = REMEDIATIONS[how]
    monkeypatch.setattr(module, step, interleaving.wrap(getattr(module, step)))
    await remediate(harness, how, admin_token, user_token)
    created = await interleaving.second()

    assert created.status_code in (201, 401), created.text
    if created.status_code == 201:
        refused = await harness.client.get(
            "/api/account", headers=key_header(created.json()["key"])
        )
        assert refused.status_code == 401
    alice = await harness.services.users.get_user("alice")
    page = await harness.services.api_keys.list_keys(
        None, PageRequest(size=100), owner_id=alice.id, include_revoked=True
    )
    for key in page.items:
        assert key.revoked_at is not None or key.suspended_at is not None, key.name


# The reads of a key (or service credential) that a change starts with: ``by_ref`` was
# it before reads for changes took a lock (``locked``); either starts the second request.
KEY_READS = ("by_ref", "locked")
CREDENTIAL_READS = ("by_credential_id", "locked")


async def test_two_rotations_of_a_key_at_once_both_give_a_working_key(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rotations with a grace period at once: the second rotates the first's result,
    so each returned key works (the first's through the grace period)."""
    created = await harness.create_key(user_token)
    path = f"{KEYS}/{created['id']}/generate"

    async def rotate() -> httpx2.Response:
        return await harness.client.post(
            path, params={"graceSeconds": 300}, headers=bearer(user_token)
        )

    interleaving = Interleaving(rotate)
    interleaving.wrap_methods(monkeypatch, ApiKeyRepository, *KEY_READS)
    first = await rotate()
    second = await interleaving.second()
    monkeypatch.undo()

    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    for rotated in (first, second):
        works = await harness.client.get("/api/account", headers=key_header(rotated.text))
        assert works.status_code == 200


async def test_a_key_revoked_while_it_is_rotated_is_not_rotated_after(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation that answers while a rotation of the key is under way comes after the
    rotation (which then answers 200) or before it (the rotation is refused, 409): never
    a new key for a key revoked before it was made."""
    created = await harness.create_key(user_token)
    key_path = f"{KEYS}/{created['id']}"

    async def revoke() -> httpx2.Response:
        return await harness.client.delete(key_path, headers=bearer(user_token))

    interleaving = Interleaving(revoke)
    interleaving.wrap_methods(monkeypatch, ApiKeyRepository, *KEY_READS)
    rotated = await harness.client.post(f"{key_path}/generate", headers=bearer(user_token))
    revoked = await interleaving.second()
    monkeypatch.undo()

    assert revoked.status_code == 204, revoked.text
    if interleaving.finished_inside:  # the revocation came first
        assert rotated.status_code == 409, rotated.text
    else:
        assert rotated.status_code == 200, rotated.text
    refused = await harness.client.get("/api/account", headers=key_header(rotated.text))
    assert refused.status_code == 401


async def test_two_rotations_of_a_service_credential_at_once_both_give_a_working_one(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for keys: the second rotation rotates the first's result."""
    credentials = harness.services.service_credentials
    created = await credentials.create("log-input", [InternalEndpoint.API_KEYS_AUTHENTICATE])
    credential_id = created.view.id

    async def rotate() -> CreatedCredential:
        return await credentials.rotate(credential_id, grace=timedelta(seconds=300))

    interleaving = Interleaving(rotate)
    interleaving.wrap_methods(monkeypatch, ServiceCredentialRepository, *CREDENTIAL_READS)
    first = await rotate()
    second = await interleaving.second()
    monkeypatch.undo()

    for rotated in (first, second):
        caller = await credentials.authenticate(
            rotated.plaintext, InternalEndpoint.API_KEYS_AUTHENTICATE, LOOPBACK
        )
        assert caller is not None


async def test_a_service_credential_revoked_while_it_is_rotated_is_not_rotated_after(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation done before a rotation commits makes the rotation refused (409)."""
    credentials = harness.services.service_credentials
    created = await credentials.create("log-input", [InternalEndpoint.API_KEYS_AUTHENTICATE])
    credential_id = created.view.id
    interleaving = Interleaving(lambda: credentials.revoke(credential_id))
    interleaving.wrap_methods(monkeypatch, ServiceCredentialRepository, *CREDENTIAL_READS)
    try:
        await credentials.rotate(credential_id)
    except Conflict:
        assert interleaving.finished_inside
    else:
        assert not interleaving.finished_inside, "rotated a credential revoked before"
    await interleaving.second()


@pytest.mark.parametrize("action", ["deactivate", "delete"])
async def test_two_admins_removing_each_other_at_once_leave_one(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Two admins deactivating (or deleting) each other at once: one succeeds, the other is
    refused as the last admin's removal; an active admin remains."""
    await harness.create_user("bob", "bob-password-for-tests", admin=True)
    bob_token = await harness.login("bob", "bob-password-for-tests")

    async def remove(login: str, token: str) -> httpx2.Response:
        if action == "delete":
            return await harness.client.delete(f"/api/users/{login}", headers=bearer(token))
        return await harness.client.put(
            f"/api/users/{login}", json={"activated": False}, headers=bearer(token)
        )

    interleaving = Interleaving(lambda: remove("admin", bob_token))
    interleaving.wrap_methods(monkeypatch, UserRepository, "count_active_admins")
    first = await remove("bob", admin_token)
    second = await interleaving.second()
    monkeypatch.undo()

    statuses = sorted((first.status_code, second.status_code))
    assert statuses[0] in (200, 204), (first.text, second.text)
    assert statuses[1] in (400, 409), (first.text, second.text)
    async with harness.services.db.session() as session:
        assert await UserRepository(session).count_active_admins() == 1


async def test_a_reset_link_used_twice_at_once_works_once(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single-use reset link sent to two nodes at once sets the password once: the
    other use is refused as a used link."""
    _, issued = await harness.services.users.new_reset_key("alice")
    resets = harness.services.password_resets

    async def use(password: str) -> str:
        try:
            await resets.finish(issued.key, password)
        except ResetKeyInvalid:
            return "refused"
        return "used"

    # The second call: the one in the transaction (the first is the check before it).
    interleaving = Interleaving(lambda: use("second-use-password-42"), on_call=2)
    interleaving.wrap_methods(monkeypatch, UserRepository, "by_reset_key")
    first = await use("first-use-password-42")
    second = await interleaving.second()

    assert sorted((first, second)) == ["refused", "used"]


async def test_an_invitation_finished_while_an_admin_deactivates_the_user_stays_off(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invited user's link used while an admin deactivates the user: either the link
    came first (and the deactivation then ends the account) or it is refused; the user
    is never left active."""
    _, issued = await harness.services.users.invite_user(
        NewUser(login="carol", email="carol@example.com", password=None)
    )
    interleaving = Interleaving(
        lambda: harness.services.users.deactivate("carol", acting_user_id=None), on_call=2
    )
    interleaving.wrap_methods(monkeypatch, UserRepository, "by_reset_key")
    try:
        await harness.services.password_resets.finish(issued.key, "she-chose-this-one-42")
    except ResetKeyInvalid:
        assert interleaving.finished_inside
    await interleaving.second()
    monkeypatch.undo()

    assert not (await harness.services.users.get_user("carol")).activated


async def test_a_code_of_one_enrolment_verifies_no_enrolment_started_meanwhile(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A code of the TOTP secret being enrolled, verified while a second set-up replaces
    that secret, verifies nothing: the new secret cannot be put in force unproved."""
    factors = harness.services.second_factor
    alice = await harness.services.users.get_user("alice")
    first = await factors.start_enrolment(alice, "TOTP")
    assert first.secret is not None
    interleaving = Interleaving(lambda: factors.start_enrolment(alice, "TOTP"))
    interleaving.wrap_methods(monkeypatch, SecondFactorService, "_pending_code_matches")
    code = totp_code(first.secret, totp_step(harness.clock().timestamp()))
    checked = await factors.verify_enrolment(alice, "TOTP", code)
    await interleaving.second()
    monkeypatch.undo()

    assert not checked.valid
    with pytest.raises(Conflict):
        await factors.complete_enrolment(alice, "TOTP", enable=True)


async def test_an_enrolment_started_while_the_previous_one_is_verified_needs_its_own_code(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second set-up that read the enrolment in progress before a code of it was
    verified replaces it whole: the verification does not carry over to the new secret."""
    factors = harness.services.second_factor
    alice = await harness.services.users.get_user("alice")
    first = await factors.start_enrolment(alice, "TOTP")
    assert first.secret is not None
    code = totp_code(first.secret, totp_step(harness.clock().timestamp()))
    interleaving = Interleaving(lambda: factors.verify_enrolment(alice, "TOTP", code))
    interleaving.wrap_methods(monkeypatch, SecondFactorRepository, "get_or_create")
    await factors.start_enrolment(alice, "TOTP")
    await interleaving.second()
    monkeypatch.undo()

    with pytest.raises(Conflict):
        await factors.complete_enrolment(alice, "TOTP", enable=True)


async def test_two_password_changes_at_once_leave_one_and_say_so(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race review: two sessions changing the password at once both got 200, and only
    the one written last worked (the first caller was told a password that did not
    work). The change written second was checked against a password that is no longer
    the current one: 409, and the first change stands."""
    await harness.create_user("alice", USER_PASSWORD)
    first, second = [await harness.login("alice", USER_PASSWORD) for _ in range(2)]

    def change(token: str, new_password: str) -> Request:
        return lambda: harness.client.post(
            "/api/account/change-password",
            json={"currentPassword": USER_PASSWORD, "newPassword": new_password},
            headers=bearer(token),
        )

    interleaving = Interleaving(change(second, "second-new-passphrase-42"))
    interleaving.wrap_methods(monkeypatch, AsyncPasswordHasher, "hash")
    answer = await change(first, "first-new-passphrase-42")()
    other = await interleaving.second()

    assert other.status_code == 200, other.text
    assert answer.status_code == 409, answer.text
    harness.clock.advance(seconds=1)
    assert await harness.login("alice", "second-new-passphrase-42")
    refused = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": "first-new-passphrase-42"}
    )
    assert refused.status_code == 401


@pytest.mark.parametrize("action", ["generate", "resume"])
async def test_the_owners_rotation_racing_a_deactivation_does_not_re_enable_the_key(
    harness: Harness,
    admin_token: str,
    user_token: str,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
) -> None:
    """The diff review: the owner's rotation (which re-enables a suspended key) or
    re-enabling, authenticated just before a deactivation committed, re-enabled the key
    the deactivation had suspended; after the reactivation it worked though nobody
    re-enabled it. It is refused now (the owner's session ended), or runs first and the
    deactivation suspends the result."""
    created = await harness.create_key(user_token, name="rotated")
    control = await harness.create_key(user_token, name="control")

    async def set_active(activated: bool) -> None:
        changed = await harness.client.put(
            "/api/users",
            json={"login": "alice", "email": "alice@example.com", "activated": activated},
            headers=bearer(admin_token),
        )
        assert changed.status_code == 200, changed.text

    original = ApiKeyRepository.locked
    deactivation: asyncio.Task[None] | None = None

    async def deactivated_first(self: ApiKeyRepository, ref: Any) -> Any:
        nonlocal deactivation
        if deactivation is None:
            deactivation = asyncio.ensure_future(set_active(False))
            await asyncio.wait({deactivation}, timeout=INSIDE_SECONDS)
        return await original(self, ref)

    monkeypatch.setattr(ApiKeyRepository, "locked", deactivated_first)
    answer = await harness.client.post(
        f"{KEYS}/{created['id']}/{action}", headers=bearer(user_token)
    )
    assert deactivation is not None
    await asyncio.wait_for(deactivation, OUTSIDE_SECONDS)
    monkeypatch.setattr(ApiKeyRepository, "locked", original)
    await set_active(True)

    assert answer.status_code in (200, 401), answer.text
    usable = answer.text if action == "generate" and answer.status_code == 200 else None
    for plaintext in (created["key"], control["key"], usable):
        if plaintext is not None:
            refused = await harness.client.get("/api/account", headers=key_header(plaintext))
            assert refused.status_code == 401, refused.text
