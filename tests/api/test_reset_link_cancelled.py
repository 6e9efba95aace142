"""A pending password-reset link ends when the account changes under it: a password set
by the user or an admin, a new e-mail address, a deactivation. Otherwise a link leaked
(or mailed to an address the user no longer has) would set the password afterwards, or
on a deactivated account for when it comes back (second attack review)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from authgate.services.user_fields import UserChanges
from tests.api.test_contract_utmstack_users import harness_with
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer, test_settings
from tests.mail import MailRecorder, running_smtp_server, smtp_settings

INIT = "/api/account/reset-password/init"
FINISH = "/api/account/reset-password/finish"
CHOSEN = "attacker-chosen-password-77"


@asynccontextmanager
async def harness_with_mail(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> AsyncIterator[tuple[Harness, MailRecorder]]:
    """An app that mails through a test SMTP server, and what that server received."""
    with running_smtp_server() as (mail, port):
        settings = test_settings(
            tmp_path / "data", database_url=database_url, **smtp_settings(port)
        )
        async with harness_with(settings, clock) as harness:
            yield harness, mail


async def mailed_key(harness: Harness, mail: MailRecorder) -> str:
    """Ask for alice's link; the key from the last mail."""
    assert (await harness.client.post(INIT, content=b"alice@example.com")).status_code == 200
    await harness.services.password_resets.settle()
    text = mail.messages()[-1].get_content()
    url = next(word for word in text.split() if "/settings/reset?key=" in word)
    key: str = parse_qs(urlparse(url).query)["key"][0]
    return key


async def change_own_password(harness: Harness) -> None:
    token = await harness.login("alice", USER_PASSWORD)
    response = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": "a-brand-new-password-42"},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text


async def admin_sets_password(harness: Harness) -> None:
    await harness.services.users.set_password("alice", "set-by-the-admin-42")


async def new_address(harness: Harness) -> None:
    await harness.services.users.update_user(
        "alice", UserChanges(email="alice@new.example"), acting_user_id=None
    )


async def deactivate_and_reactivate(harness: Harness) -> None:
    await harness.services.users.deactivate("alice", acting_user_id=None)
    await harness.services.users.update_user(
        "alice", UserChanges(activated=True), acting_user_id=None
    )


@pytest.mark.parametrize(
    "change", [change_own_password, admin_sets_password, new_address, deactivate_and_reactivate]
)
async def test_a_change_of_the_account_ends_its_pending_link(
    tmp_path: Path,
    database_url: str,
    clock: FakeClock,
    change: Callable[[Harness], Awaitable[None]],
) -> None:
    async with harness_with_mail(tmp_path, database_url, clock) as (harness, mail):
        await harness.create_user("alice")
        key = await mailed_key(harness, mail)
        await change(harness)
        clock.advance(seconds=1)
        finish = await harness.client.post(FINISH, json={"key": key, "newPassword": CHOSEN})
        assert finish.status_code == 400, finish.text
        assert finish.json()["code"] == "reset_key_invalid"
        login = await harness.client.post(
            "/api/authenticate", json={"username": "alice", "password": CHOSEN}
        )
        assert login.status_code == 401


async def test_a_deactivated_users_link_sets_nothing(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """Even a link left in place (written before deactivations ended links) is refused
    while its user is deactivated."""
    async with harness_with_mail(tmp_path, database_url, clock) as (harness, mail):
        await harness.create_user("alice")
        key = await mailed_key(harness, mail)
        async with harness.services.feed.unit_of_work() as work:
            user = await harness.services.db.users(work.session).by_login("alice")
            assert user is not None
            user.activated = False  # as an older version left it: link in place
        finish = await harness.client.post(FINISH, json={"key": key, "newPassword": CHOSEN})
        assert finish.status_code == 400, finish.text
