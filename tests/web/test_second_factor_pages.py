"""The second factor in the Settings UI, in-process on SQLite and PostgreSQL: enrolling
from the account page, the sign-in step, the pre-verification cookie being no session,
and the admin's reset. (tests/browser has the same in Chromium.)"""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest

from authgate.security.second_factor import totp_code, totp_step
from authgate.services.second_factor import SecondFactorService
from tests.api.test_login_during_a_reset import interleaved
from tests.api.test_second_factor import _last_code as last_code
from tests.api.test_second_factor import harness_with, mailed_codes, store_totp_secret
from tests.conftest import USER_PASSWORD, Harness
from tests.web.conftest import LOGIN, Browser, OpenBrowser, html, redirect_target

CODE_PAGE = "/settings/login/code"


def code(harness: Harness, secret: str, steps: int = 0) -> str:
    return totp_code(secret, totp_step(harness.clock().timestamp()) + steps)


async def enrol(harness: Harness, alice: Browser) -> tuple[str, list[str]]:
    setup = await alice.post("/settings/account/tfa/start")
    assert setup.status_code == 200
    page = html(setup)
    secret = page.by_id("tfa-secret").text.strip()
    assert "<svg" in setup.text  # the QR code, rendered by the server
    done = await alice.post("/settings/account/tfa/confirm", {"code": code(harness, secret)})
    assert done.status_code == 200
    codes = [item.text.strip() for item in html(done).by_id("recovery-codes").find_all("li")]
    return secret, codes


async def second_step_form(browser: Browser) -> dict[str, str]:
    page = html(await browser.get(CODE_PAGE))
    return {k: v for k, v in page.find("form", id="code-form").inputs().items() if k != "code"}


async def test_enrol_then_sign_in_with_a_code(
    harness: Harness, alice: Browser, open_browser: OpenBrowser
) -> None:
    secret, codes = await enrol(harness, alice)
    assert len(codes) == 10
    account = await alice.get("/settings/account")
    assert "On (authenticator app)" in account.text
    # The enrolling session proved a code: it may manage the factor at once.
    renewed = await alice.post("/settings/account/tfa/recovery-codes")
    assert renewed.status_code == 200
    assert len(html(renewed).by_id("recovery-codes").find_all("li")) == 10

    browser = await open_browser()
    first = await browser.sign_in("alice", USER_PASSWORD)
    assert redirect_target(first).startswith(CODE_PAGE)
    assert browser.session is None  # the pre-verification cookie is no session
    refused = await browser.get("/settings/account")
    assert redirect_target(refused).startswith(LOGIN)

    form = await second_step_form(browser)
    right = code(harness, secret)  # the set-up code's step: it still signs in
    wrong = await browser.post(
        CODE_PAGE, {**form, "code": "111111" if right != "111111" else "222222"}, csrf=False
    )
    assert wrong.status_code == 401
    assert "That code is not valid." in wrong.text
    signed = await browser.post(CODE_PAGE, {**form, "code": right}, csrf=False)
    assert signed.status_code == 303
    assert browser.session is not None
    assert (await browser.get("/settings/account")).status_code == 200


async def test_admin_sees_and_resets_the_second_factor(
    harness: Harness, admin: Browser, alice: Browser, open_browser: OpenBrowser
) -> None:
    await enrol(harness, alice)
    users = await admin.get("/settings/users")
    assert re.search(r'data-label="2FA"><span class="badge active">TOTP', users.text)
    reset = await admin.post("/settings/users/alice/tfa/reset")
    assert reset.status_code == 303
    browser = await open_browser()
    again = await browser.sign_in("alice", USER_PASSWORD)
    assert redirect_target(again) == "/settings/api-keys"  # password alone again


async def test_a_wrong_code_keeps_the_page_to_return_to(
    harness: Harness, alice: Browser, open_browser: OpenBrowser
) -> None:
    """The sign-in step posts ``next`` in its forms: after a wrong code the page asked for
    is still where the right one leads."""
    secret, _ = await enrol(harness, alice)
    browser = await open_browser()
    first = await browser.sign_in("alice", USER_PASSWORD, next="/settings/account")
    form = html(await browser.get(redirect_target(first))).find("form", id="code-form").inputs()
    assert form["next"] == "/settings/account"
    right = code(harness, secret)

    wrong = await browser.post(CODE_PAGE, {**form, "code": wrong_code(right)}, csrf=False)

    retry = html(wrong).find("form", id="code-form")
    assert retry.inputs()["next"] == "/settings/account"
    assert retry.find("input", id="code").attrs["aria-describedby"] == "code-error"
    signed = await browser.post(CODE_PAGE, {**retry.inputs(), "code": right}, csrf=False)
    assert redirect_target(signed) == "/settings/account"


async def test_a_wrong_code_at_forced_enrolment_shows_the_same_secret_and_next(
    tmp_path: Path, database_url: str
) -> None:
    """AUTHGATE_TFA_REQUIRED=all: a wrong code while enrolling at sign-in shows the same
    secret again (not the start of the set-up) with the page to return to."""
    async with harness_with(tmp_path, database_url, tfa_required="all") as other:
        await other.create_user("alice")
        transport = httpx2.ASGITransport(app=other.app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as c:
            browser = Browser(c)
            first = await browser.sign_in("alice", USER_PASSWORD, next="/settings/account")
            form = html(await browser.get(redirect_target(first))).find("form").inputs()
            started = html(await browser.post(CODE_PAGE, {**form, "action": "enrol"}, csrf=False))
            secret = started.by_id("tfa-secret").text
            confirm = started.find("form").inputs()
            right = code(other, secret)

            wrong = await browser.post(
                CODE_PAGE, {**confirm, "code": wrong_code(right)}, csrf=False
            )

            assert wrong.status_code == 400
            page = html(wrong)
            assert page.by_id("tfa-secret").text == secret
            retry = page.find("form").inputs()
            assert retry["next"] == "/settings/account"
            assert retry["action"] == "confirm"
            done = await browser.post(CODE_PAGE, {**retry, "code": right}, csrf=False)
            assert html(done).by_id("recovery-codes-done").attrs["href"] == "/settings/account"


async def test_a_mailed_code_signs_in_and_cannot_be_skipped_by_enrolling(
    tmp_path: Path, database_url: str
) -> None:
    """AUTHGATE_TFA_UNENROLLED=email: the sign-in step asks for the mailed code (it offered
    to set up an authenticator app instead, which the password alone could then do)."""
    async with mailed_codes(tmp_path, database_url) as (other, recorder):
        transport = httpx2.ASGITransport(app=other.app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as c:
            browser = Browser(c)
            first = await browser.sign_in("alice", USER_PASSWORD)
            step = html(await browser.get(redirect_target(first)))
            code_form = step.find("form", id="code-form")
            assert code_form.find("label").text == "The code we e-mailed you"
            form = {k: v for k, v in code_form.inputs().items() if k != "code"}

            enrol = await browser.post(CODE_PAGE, {**form, "action": "enrol"}, csrf=False)
            assert enrol.status_code == 409
            assert html(enrol).find_all(id="tfa-secret") == []
            signed = await browser.post(
                CODE_PAGE, {**form, "code": last_code(recorder.messages())}, csrf=False
            )
            assert signed.status_code == 303
            assert browser.session is not None


async def test_a_wrong_code_while_setting_up_keeps_the_set_up(
    harness: Harness, alice: Browser
) -> None:
    """On the account page, a wrong code shows the same secret and QR code again with the
    error attached to the code field; the right code then turns the factor on."""
    setup = html(await alice.post("/settings/account/tfa/start"))
    secret = setup.by_id("tfa-secret").text
    right = code(harness, secret)

    wrong = await alice.post("/settings/account/tfa/confirm", {"code": wrong_code(right)})

    assert wrong.status_code == 400
    page = html(wrong)
    assert page.by_id("tfa-secret").text == secret
    assert page.find("svg") is not None
    field = page.find("input", id="code")
    assert field.attrs["aria-describedby"] == "code-error"
    assert "autofocus" in field.attrs
    assert page.by_id("code-error").text == "The code is not valid"
    done = await alice.post("/settings/account/tfa/confirm", {"code": right})
    assert done.status_code == 200
    assert len(html(done).by_id("recovery-codes").find_all("li")) == 10


def wrong_code(right: str) -> str:
    return "111111" if right != "111111" else "222222"


async def test_a_stored_secret_no_code_comes_from_is_a_refused_code(
    harness: Harness, alice_id: int, open_browser: OpenBrowser
) -> None:
    """A TOTP secret in force that is not base32 (an import before imports checked
    secrets): the sign-in step says the code is not valid (401), as for a secret that
    does not decrypt; it was a 500 from pyotp."""
    await store_totp_secret(harness, "alice", "not base32!!")
    browser = await open_browser()
    first = await browser.sign_in("alice", USER_PASSWORD)
    assert redirect_target(first).startswith(CODE_PAGE)
    form = await second_step_form(browser)
    refused = await browser.post(CODE_PAGE, {**form, "code": "123456"}, csrf=False)
    assert refused.status_code == 401, refused.text
    assert "That code is not valid." in refused.text
    assert browser.session is None


async def test_log_out_everywhere_while_a_set_up_is_confirmed_ends_the_new_session(
    harness: Harness, alice: Browser, alice_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Log out everywhere" committing while the set-up's code is checked: the session
    the confirmation starts (a new token, second factor proved) is refused like every
    other of alice's (it was stamped when issued, after the change, and outlived it)."""
    setup = html(await alice.post("/settings/account/tfa/start"))
    secret = setup.by_id("tfa-secret").text.strip()
    right = code(harness, secret)

    async def log_out_everywhere() -> None:
        await harness.services.accounts.log_out_everywhere(alice_id)

    done = await interleaved(
        harness, monkeypatch, SecondFactorService, "verify_enrolment", call=1,
        login=lambda: alice.post("/settings/account/tfa/confirm", {"code": right}),
        meanwhile=log_out_everywhere,
    )  # fmt: skip

    assert done.status_code == 200, done.text  # the code was checked before the change
    assert redirect_target(await alice.get("/settings/account")).startswith(LOGIN)


async def test_a_reloaded_new_recovery_codes_form_makes_no_third_set(
    harness: Harness, alice: Browser, open_browser: OpenBrowser
) -> None:
    """The Settings UI review: the new recovery codes are the answer to the POST, so a
    reload sent the form again and replaced them at once: the set shown first (which the
    user may have written down) was refused at sign-in. The form names the codes it
    replaces; sent again, nothing is changed (409, said why)."""
    await enrol(harness, alice)
    harness.clock.advance(seconds=5)  # (the fake clock: a set made later than the first)
    form = (
        html(await alice.get("/settings/account"))
        .find("form", action="/settings/account/tfa/recovery-codes")
        .inputs()
    )
    first = await alice.post("/settings/account/tfa/recovery-codes", form, csrf=False)
    assert first.status_code == 200
    shown = [item.text.strip() for item in html(first).by_id("recovery-codes").find_all("li")]
    harness.clock.advance(seconds=5)
    reloaded = await alice.post("/settings/account/tfa/recovery-codes", form, csrf=False)
    assert reloaded.status_code == 409
    assert "nothing was changed" in html(reloaded).by_id("tfa-error").text
    # The codes shown first still work: one of them signs in at the second step.
    browser = await open_browser()
    assert redirect_target(await browser.sign_in("alice", USER_PASSWORD)).startswith(CODE_PAGE)
    step = await second_step_form(browser)
    signed = await browser.post(CODE_PAGE, {**step, "code": shown[0]}, csrf=False)
    assert signed.status_code == 303, signed.text
