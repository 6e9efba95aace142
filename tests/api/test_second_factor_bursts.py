"""Second-factor codes sent at once: the five-guess lock holds against a burst (each
attempt is counted before its code is checked), and one pre-verification token buys one
second step however many requests carry it (no 500, no code spent by a loser)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.exceptions import SecondFactorLocked
from authgate.services.second_factor import MAX_FAILURES
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.api.test_second_factor import (
    current_code,
    enrol_totp,
    harness_with,
    password_step,
)
from tests.api.v1.test_v12_second_factor import enrol_totp_v12
from tests.conftest import USER_PASSWORD, Harness, bearer

BURST = 30


def wrong_code(harness: Harness, secret: str) -> str:
    """A six-digit code that is none of the codes TOTP accepts now (drift included)."""
    accepted = {current_code(harness, secret, steps=step) for step in (-1, 0, 1)}
    return next(code for code in ("111111", "222222", "333333", "444444") if code not in accepted)


async def audited(harness: Harness, event_type: str) -> list[Any]:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=(event_type,)), PageRequest(size=500)
    )
    return list(page.items)


async def checked_codes(harness: Harness, reason: str) -> int:
    """How many codes were actually checked and found wrong (each is audited once)."""
    return sum(1 for event in await audited(harness, "TFA_FAILURE") if event.reason == reason)


async def pre_verification_tokens(harness: Harness, count: int) -> list[str]:
    return [(await password_step(harness)).json()["token"] for _ in range(count)]


async def burst_of_wrong_codes(harness: Harness, secret: str) -> list[httpx2.Response]:
    """BURST wrong codes at once on v10's second step, each with a token of its own (so
    that only the account's lock, not the token, stands between them and the check)."""
    wrong = wrong_code(harness, secret)
    tokens = await pre_verification_tokens(harness, BURST)
    return list(
        await asyncio.gather(
            *(
                harness.client.get(
                    "/api/tfa/verifyCode", params={"code": wrong}, headers=bearer(token)
                )
                for token in tokens
            )
        )
    )


async def assert_burst_gets_five_checks(harness: Harness, secret: str) -> None:
    responses = await burst_of_wrong_codes(harness, secret)
    codes = [response.json()["code"] for response in responses]
    # At most five codes are looked at: the first four wrong ones are refused as wrong,
    # the fifth locks; every other is refused as locked without its code being looked
    # at. (Fewer than five when the lock lands while a numbered attempt is still reading
    # it: that one is refused as locked, and takes its count back. Stricter, never laxer.)
    checked = await checked_codes(harness, "wrong_code")
    assert 1 <= checked <= MAX_FAILURES, codes
    assert codes.count("invalid_second_factor") == checked - 1, codes
    assert codes.count("second_factor_locked") == BURST - checked + 1, codes
    assert all(r.status_code in (401, 429) for r in responses)
    # The account is locked: the right code of a new login is refused too.
    token = (await password_step(harness)).json()["token"]
    locked = await harness.client.get(
        "/api/tfa/verifyCode",
        params={"code": current_code(harness, secret)},
        headers=bearer(token),
    )
    assert locked.status_code == 429, locked.text
    assert locked.json()["code"] == "second_factor_locked"
    # Ten minutes later it is not.
    harness.clock.advance(minutes=11)
    token = (await password_step(harness)).json()["token"]
    opened = await harness.client.get(
        "/api/tfa/verifyCode",
        params={"code": current_code(harness, secret)},
        headers=bearer(token),
    )
    assert opened.status_code == 200, opened.text


async def test_a_burst_of_wrong_codes_gets_five_checks(harness: Harness, user_token: str) -> None:
    """30 wrong codes sent at once (30 tokens of one account): five are checked, then
    the lock (before, each checked the lock, its code, and was counted after: 46 of 60
    were checked in the review)."""
    secret, _ = await enrol_totp(harness, user_token)
    await assert_burst_gets_five_checks(harness, secret)


async def test_a_burst_of_wrong_codes_gets_five_checks_with_redis(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """The same with the counters in Redis (several workers and nodes)."""
    async with harness_with(tmp_path, database_url, redis_url=redis_url) as harness:
        await harness.create_user("alice")
        secret, _ = await enrol_totp(harness, await harness.login("alice", USER_PASSWORD))
        await assert_burst_gets_five_checks(harness, secret)
        assert harness.services.redis is not None
        assert not harness.services.redis.is_down


async def test_a_code_counted_just_after_a_lock_leaves_no_count_behind(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A code whose request saw no lock, but was counted just after another request's
    fifth wrong code set it (and forgot the count), is refused as locked and takes its
    count back: else the codes of a burst refused that way still counted when the lock
    ended, and the account was locked again by its first code."""
    secret, _ = await enrol_totp(harness, user_token)
    db = harness.services.db
    async with db.session() as session:
        stored = await db.users(session).by_login("alice")
    assert stored is not None
    user = await harness.services.accounts.account(stored.id)
    service = harness.services.second_factor
    store = service._throttle
    subject = f"tfa:{user.id}"
    counting = store.add_failure

    async def locked_meanwhile(name: str, *, window: int, now: float) -> float:
        # What another request's fifth wrong code does between this one's look at the
        # lock and its count.
        await store.forget_and_block((name,), name, until=now + 600, strikes=1, now=now)
        return await counting(name, window=window, now=now)

    monkeypatch.setattr(store, "add_failure", locked_meanwhile)
    with pytest.raises(SecondFactorLocked):
        await service.check_login_code(user, wrong_code(harness, secret))
    now = harness.clock().timestamp()
    assert await store.failures(subject, window=600, now=now) == 0
    monkeypatch.setattr(store, "add_failure", counting)
    harness.clock.advance(minutes=11)
    assert await service.check_login_code(user, current_code(harness, secret)) == "totp"


async def test_a_burst_of_wrong_enrolment_codes_gets_five_checks(
    harness: Harness, user_token: str
) -> None:
    """Enrolment codes count like login codes, burst or not."""
    init = await harness.client.post(
        "/api/tfa/init", json={"method": "TOTP"}, headers=bearer(user_token)
    )
    assert init.status_code == 200, init.text
    secret = init.json()["delivery"]["secret"]
    wrong = wrong_code(harness, secret)
    responses = await asyncio.gather(
        *(
            harness.client.post(
                "/api/tfa/verify",
                json={"method": "TOTP", "code": wrong},
                headers=bearer(user_token),
            )
            for _ in range(BURST)
        )
    )
    statuses = [response.status_code for response in responses]
    assert statuses.count(429) >= BURST - MAX_FAILURES + 1, statuses
    assert 1 <= await checked_codes(harness, "wrong_enrolment_code") <= MAX_FAILURES
    right = await harness.client.post(
        "/api/tfa/verify",
        json={"method": "TOTP", "code": current_code(harness, secret)},
        headers=bearer(user_token),
    )
    assert right.status_code == 429, right.text


# -- one pre-verification token, many requests at once ----------------------------------------


async def recovery_codes_left(harness: Harness, token: str) -> int:
    state = await harness.client.get("/api/account/tfa", headers=bearer(token))
    assert state.status_code == 200, state.text
    left: int = state.json()["recoveryCodesLeft"]
    return left


async def test_one_token_buys_one_second_step_however_many_requests_carry_it(
    harness: Harness, user_token: str
) -> None:
    """Ten second steps at once with one token, each with a recovery code of its own
    (v10's GET and v11's POST alike): one access token, the other nine refused as
    ``token_revoked`` without their codes being used (before: 500 internal_error from
    revoked_tokens' key, and the losers' recovery codes were spent)."""
    _, codes = await enrol_totp(harness, user_token)
    pending = (await password_step(harness)).json()["token"]

    async def second_step(index: int) -> httpx2.Response:
        if index % 2:
            return await harness.client.get(
                "/api/tfa/verifyCode", params={"code": codes[index]}, headers=bearer(pending)
            )
        return await harness.client.post(
            "/api/tfa/verify-code",
            content=codes[index],
            headers={**bearer(pending), "Content-Type": "text/plain"},
        )

    responses = await asyncio.gather(*(second_step(index) for index in range(10)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 1, [r.text for r in responses]
    refused = [response for response in responses if response.status_code != 200]
    assert {r.status_code for r in refused} == {401}, [r.text for r in refused]
    assert {r.json()["code"] for r in refused} == {"token_revoked"}
    token = next(r for r in responses if r.status_code == 200).json()["token"]
    assert await recovery_codes_left(harness, token) == 9
    # The token stays spent.
    again = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": codes[0]}, headers=bearer(pending)
    )
    assert again.status_code == 401


async def test_a_wrong_code_gives_the_token_back(harness: Harness, user_token: str) -> None:
    """The token is claimed for its second step only while the code is checked: after a
    wrong code it works again (UTMStack's UI lets the user retype the code)."""
    secret, codes = await enrol_totp(harness, user_token)
    pending = (await password_step(harness)).json()["token"]
    wrong = await harness.client.get(
        "/api/tfa/verifyCode",
        params={"code": wrong_code(harness, secret)},
        headers=bearer(pending),
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_second_factor"
    right = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": codes[3]}, headers=bearer(pending)
    )
    assert right.status_code == 200, right.text


async def test_one_pre_auth_token_buys_one_v12_session(harness: Harness) -> None:
    """The same through v12's /api/v1/auth/tfa/verify-code: one session, the losers'
    recovery codes unused."""
    alice = await harness.create_user("alice")
    login = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
    )
    _, codes = await enrol_totp_v12(harness, login.json()["access_token"])
    challenge = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
    )
    pre_auth = challenge.json()["pre_auth_token"]
    responses = await asyncio.gather(
        *(
            harness.client.post(
                "/api/v1/auth/tfa/verify-code",
                json={"pre_auth_token": pre_auth, "code": codes[index]},
            )
            for index in range(8)
        )
    )
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 1, [r.text for r in responses]
    assert set(statuses) == {200, 401}, [r.text for r in responses]
    async with harness.services.db.session() as session:
        left = await harness.services.db.one_time_codes(session).count_unused(alice, "recovery")
    assert left == 9


async def test_an_attempt_that_errs_gives_its_count_back(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diff review: a fifth attempt that ended in an error (not a wrong code, so no
    lock) left its count; every attempt after it was refused as locked and counted
    again, a refusal that renewed itself for good. An attempt not checked takes its
    count back, and so does one refused unchecked."""
    secret, _ = await enrol_totp(harness, user_token)
    wrong = wrong_code(harness, secret)
    for _ in range(MAX_FAILURES - 1):
        token = (await password_step(harness)).json()["token"]
        response = await harness.client.get(
            "/api/tfa/verifyCode", params={"code": wrong}, headers=bearer(token)
        )
        assert response.json()["code"] == "invalid_second_factor"
    factors = harness.services.second_factor

    async def broken(*_args: Any, **_kwargs: Any) -> str | None:
        raise RuntimeError("the code store is down")

    monkeypatch.setattr(factors, "_accept", broken)
    token = (await password_step(harness)).json()["token"]
    failed = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": wrong}, headers=bearer(token)
    )
    assert failed.status_code == 500
    monkeypatch.undo()
    token = (await password_step(harness)).json()["token"]
    right = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": current_code(harness, secret)}, headers=bearer(token)
    )
    assert right.status_code == 200, right.text


async def test_a_second_step_cancelled_midway_gives_the_token_back(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diff review: a second step cancelled while its code was being checked (the
    client went away) left its pre-verification token claimed: the user had to sign in
    again. Cancelled, it gives the token back as an error does."""
    secret, _ = await enrol_totp(harness, user_token)
    factors = harness.services.second_factor
    checking = asyncio.Event()

    async def hangs(*_args: Any, **_kwargs: Any) -> str:
        checking.set()
        await asyncio.Event().wait()
        raise AssertionError("never ends")

    monkeypatch.setattr(factors, "check_login_code", hangs)
    token = (await password_step(harness)).json()["token"]
    code = current_code(harness, secret)
    step = asyncio.create_task(
        harness.client.get("/api/tfa/verifyCode", params={"code": code}, headers=bearer(token))
    )
    await checking.wait()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    monkeypatch.undo()
    for _ in range(50):  # the release runs shielded, in a task of its own
        await asyncio.sleep(0.01)
    again = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": code}, headers=bearer(token)
    )
    assert again.status_code == 200, again.text
