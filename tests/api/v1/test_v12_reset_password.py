"""UTMStack v12's password recovery: ``/api/v1/auth/reset-password/init`` and ``/finish``
(``backend/modules/iam/handler/auth.go`` and ``dto/auth.go`` as issue 17 describes
them), on authgate's reset keys: mailed, single use, 24 hours, limited per address."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.api.test_contract_utmstack_users import harness_with
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer, test_settings
from tests.mail import running_smtp_server, smtp_settings

INIT = "/api/v1/auth/reset-password/init"
FINISH = "/api/v1/auth/reset-password/finish"
NEW_PASSWORD = "a-brand-new-secret-phrase"


async def test_init_always_answers_204(harness: Harness) -> None:
    """handler/auth.go ResetPasswordInit: 204 with no body for a known address, an
    unknown one, and one that is no address (no account enumeration); 400 without it."""
    await harness.create_user("alice")
    for email in ("alice@example.com", "nobody@example.com", "not an address"):
        response = await harness.client.post(INIT, json={"email": email})
        assert response.status_code == 204, email
        assert response.content == b""
    await harness.services.password_resets.settle()
    missing = await harness.client.post(INIT, json={})
    assert missing.status_code == 400
    assert list(missing.json()) == ["error"]


async def test_finish_with_the_mailed_key(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """ResetPasswordFinish {key, new_password}: 204; a weak password is 400 (the policy;
    the key stays good); a used, unknown or expired key is 410 {"error"}; the user's
    tokens end; init is limited per address (silently, still 204)."""
    with running_smtp_server() as (mail, port):
        settings = test_settings(
            tmp_path / "data",
            database_url=database_url,
            **smtp_settings(port),
        )
        async with harness_with(settings, clock) as harness:
            await harness.create_user("alice")
            old = await harness.client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
            )
            old_token = bearer(old.json()["access_token"])
            for _ in range(5):
                response = await harness.client.post(INIT, json={"email": "Alice@Example.com"})
                assert response.status_code == 204
            await harness.services.password_resets.settle()
            links = [m for m in mail.messages() if m["To"] == "alice@example.com"]
            assert len(links) == 3  # per address and hour; the rest refused quietly
            url = next(w for w in links[-1].get_content().split() if "reset?key=" in w)
            key = parse_qs(urlparse(url).query)["key"][0]

            weak = await harness.client.post(FINISH, json={"key": key, "new_password": "short"})
            assert weak.status_code == 400
            assert list(weak.json()) == ["error"]
            clock.advance(seconds=1)
            done = await harness.client.post(
                FINISH, json={"key": key, "new_password": NEW_PASSWORD}
            )
            assert done.status_code == 204, done.text
            assert done.content == b""
            used = await harness.client.post(
                FINISH, json={"key": key, "new_password": NEW_PASSWORD}
            )
            assert used.status_code == 410
            assert list(used.json()) == ["error"]
            unknown = await harness.client.post(
                FINISH, json={"key": "x" * 43, "new_password": NEW_PASSWORD}
            )
            assert unknown.status_code == 410
            clock.advance(seconds=1)
            me = await harness.client.get("/api/v1/auth/me", headers=old_token)
            assert me.status_code == 401
            login = await harness.client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": NEW_PASSWORD}
            )
            assert login.status_code == 200


async def test_an_expired_key_is_410(harness: Harness) -> None:
    """Keys live 24 hours (authgate's rule, as UTMStack's): then 410."""
    await harness.create_user("alice")
    _, issued = await harness.services.users.new_reset_key("alice")
    harness.clock.advance(hours=24, seconds=1)
    response = await harness.client.post(
        FINISH, json={"key": issued.key, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 410
    assert list(response.json()) == ["error"]
