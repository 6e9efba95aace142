"""A login's second step (v10/v11 ``/api/tfa/verify-code``, v12
``/api/v1/auth/tfa/verify-code``, a forced enrolment's completion) or a v12 refresh in
flight while the user's password is reset or changed, or they log out everywhere (the
race review): what it issues must not outlive the change. The step reads the user
anew, which must still accept its pending token, and dates what it issues (the token's
``iat``, the v12 session's ``created_at``) from that read; the refresh dates its access
token from before its read of the user. Each test makes the change commit at one exact
point of the step, after its check of the user and before it issues anything (a second
apart on the test clock each side), as ``test_login_during_a_reset`` does for logins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authgate.services.access_tokens import AccessTokenService
from authgate.services.second_factor import SecondFactorService
from tests.api.test_login_during_a_reset import (
    NEW_PASSWORD,
    Change,
    assert_v12_pair_dead,
    interleaved,
    reset,
)
from tests.api.test_second_factor import current_code, enrol_totp, harness_with, password_step
from tests.api.v1.test_v12_second_factor import VERIFY_CODE, alice_with_totp, totp_now, v12_login
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer


def changed_by_alice(harness: Harness, user_id: int) -> Change:
    async def change() -> None:
        await harness.services.accounts.change_password(
            user_id, current_password=USER_PASSWORD, new_password=NEW_PASSWORD
        )

    return change


def logged_out_everywhere(harness: Harness, user_id: int) -> Change:
    async def change() -> None:
        await harness.services.accounts.log_out_everywhere(user_id)

    return change


CHANGES = ["reset", "change", "log_out_everywhere"]


async def the_change(harness: Harness, name: str, user_id: int) -> Change:
    if name == "reset":
        await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
        return reset(harness, await harness.login("admin", ADMIN_PASSWORD))
    if name == "change":
        return changed_by_alice(harness, user_id)
    return logged_out_everywhere(harness, user_id)


async def alice_id(harness: Harness) -> int:
    return (await harness.services.users.get_user("alice")).id


@pytest.mark.parametrize("change", CHANGES)
async def test_a_v11_second_step_racing_a_reset_issues_a_dead_token(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    secret, _ = await enrol_totp(harness, user_token)
    pending = (await password_step(harness)).json()["token"]
    meanwhile = await the_change(harness, change, await alice_id(harness))
    code = current_code(harness, secret)

    answer = await interleaved(
        harness, monkeypatch, SecondFactorService, "check_login_code", call=1,
        login=lambda: harness.client.post(
            "/api/tfa/verify-code", content=code,
            headers={**bearer(pending), "Content-Type": "text/plain"},
        ),
        meanwhile=meanwhile,
    )  # fmt: skip

    assert answer.status_code == 200, answer.text  # the code was checked before the change
    token = answer.json()["token"]
    assert answer.json()["authenticated"] is True
    assert (await harness.client.get("/api/account", headers=bearer(token))).status_code == 401


async def test_a_v11_second_step_after_a_reset_is_refused(
    harness: Harness, user_token: str, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reset commits after the pending token was checked, before the step reads the
    user again: the step refuses the token, as it would have been refused had the reset
    come first."""
    secret, _ = await enrol_totp(harness, user_token)
    pending = (await password_step(harness)).json()["token"]
    code = current_code(harness, secret)

    answer = await interleaved(
        harness, monkeypatch, AccessTokenService, "authenticate_pre_verification",
        call=1,
        login=lambda: harness.client.post(
            "/api/tfa/verify-code", content=code,
            headers={**bearer(pending), "Content-Type": "text/plain"},
        ),
        meanwhile=reset(harness, admin_token),
    )  # fmt: skip

    assert answer.status_code == 401, answer.text


async def test_a_forced_enrolment_racing_a_reset_issues_a_dead_token(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness_with(tmp_path, database_url, tfa_required="all") as harness:
        await harness.create_user("alice")
        # (An admin's reset would need an admin who passed a second factor too.)
        meanwhile = changed_by_alice(harness, await alice_id(harness))
        pending = (await password_step(harness)).json()["token"]
        init = await harness.client.post(
            "/api/enrollment/tfa", json={"stage": 0, "method": "TOTP"}, headers=bearer(pending)
        )
        secret = init.json()["delivery"]["secret"]
        verify = await harness.client.post(
            "/api/enrollment/tfa",
            json={"stage": 1, "method": "TOTP", "code": current_code(harness, secret)},
            headers=bearer(pending),
        )
        assert verify.json()["valid"] is True, verify.text

        answer = await interleaved(
            harness, monkeypatch, SecondFactorService, "complete_enrolment", call=1,
            login=lambda: harness.client.post(
                "/api/enrollment/tfa",
                json={"stage": 2, "method": "TOTP", "enable": True},
                headers=bearer(pending),
            ),
            meanwhile=meanwhile,
        )  # fmt: skip

        assert answer.status_code == 200, answer.text
        token = answer.json()["token"]
        refused = await harness.client.get("/api/account", headers=bearer(token))
        assert refused.status_code == 401


@pytest.mark.parametrize("change", CHANGES)
async def test_a_v12_second_step_racing_a_reset_starts_a_dead_session(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    secret, _ = await alice_with_totp(harness)
    meanwhile = await the_change(harness, change, await alice_id(harness))
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    code = totp_now(harness, secret)

    answer = await interleaved(
        harness, monkeypatch, SecondFactorService, "check_login_code", call=1,
        login=lambda: harness.client.post(
            VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": code}
        ),
        meanwhile=meanwhile,
    )  # fmt: skip

    assert answer.status_code == 200, answer.text
    await assert_v12_pair_dead(harness, answer.json())


@pytest.mark.parametrize("change", CHANGES)
async def test_a_v12_refresh_racing_a_reset_issues_a_dead_token(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The reset commits after the refresh's transaction (its check of the user), before
    its access token is issued (the look at the second factor comes between)."""
    await harness.create_user("alice")
    meanwhile = await the_change(harness, change, await alice_id(harness))
    pair: Any = await v12_login(harness)
    harness.clock.advance(seconds=1)

    answer = await interleaved(
        harness, monkeypatch, SecondFactorService, "login_method", call=1,
        login=lambda: harness.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ),
        meanwhile=meanwhile,
    )  # fmt: skip

    assert answer.status_code == 200, answer.text
    await assert_v12_pair_dead(harness, answer.json())
