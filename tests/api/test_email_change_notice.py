"""When a user's e-mail address changes, the old address is told (the new one is where
password-reset links and e-mailed codes go from then on): whoever made the change, by
whichever route."""

from __future__ import annotations

from pathlib import Path

from authgate.services.user_fields import UserChanges
from tests.api.test_reset_link_cancelled import harness_with_mail
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, FakeClock, Harness, bearer
from tests.mail import MailRecorder


def notices(mail: MailRecorder) -> list[tuple[str, str]]:
    return [
        (str(message["To"]), message.get_content())
        for message in mail.messages()
        if message["Subject"] == "authgate: your e-mail address was changed"
    ]


async def test_the_old_address_is_told_of_every_change(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    async with harness_with_mail(tmp_path, database_url, clock) as (harness, mail):
        await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
        await harness.create_user("alice")
        admin = bearer(await harness.login("admin", ADMIN_PASSWORD))
        alice = bearer(await harness.login("alice", USER_PASSWORD))
        # By an administrator, over the REST API.
        moved = await harness.client.put(
            "/api/users/alice", json={"email": "alice@new.example"}, headers=admin
        )
        assert moved.status_code == 200, moved.text
        # By the user, on their own account (the whole account sent back).
        account = (await harness.client.get("/api/account", headers=alice)).json()
        saved = await harness.client.post(
            "/api/account", json={**account, "email": "Alice@Third.example"}, headers=alice
        )
        assert saved.status_code == 200, saved.text
        # The same address again (in other case), or another field: no notice.
        again = await harness.client.post(
            "/api/account",
            json={**account, "email": "alice@third.example", "firstName": "Alice"},
            headers=alice,
        )
        assert again.status_code == 200, again.text
        await harness.services.users.update_user(
            "alice", UserChanges(first_name="Al"), acting_user_id=None
        )
        await harness.services.notices.settle()

    sent = notices(mail)
    assert [to for to, _ in sent] == ["alice@example.com", "alice@new.example"]
    first, second = (body for _, body in sent)
    assert "account alice was changed" in first
    assert "to   alice@new.example" in first
    assert "to   alice@third.example" in second
    assert "tell your administrator" in second


async def test_without_a_mail_server_nothing_is_sent_and_the_change_stands(
    harness: Harness, admin_token: str
) -> None:
    await harness.create_user("bob")
    moved = await harness.client.put(
        "/api/users/bob", json={"email": "bob@new.example"}, headers=bearer(admin_token)
    )
    assert moved.status_code == 200, moved.text
    await harness.services.notices.settle()
    assert (await harness.services.users.get_user("bob")).email == "bob@new.example"
