"""Password-reset requests leave bounded work behind (DoS finding A): the client's
limit is counted before the answer, and at most ``ResetLimits.pending`` requests wait
for the background work, which runs one at a time; beyond that they are dropped with
the same answer, counted and logged."""

from __future__ import annotations

import logging

import pytest

from authgate.services.password_resets import ResetLimits
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import Harness

INIT = "/api/account/reset-password/init"


async def test_a_client_over_its_limit_queues_no_work(harness: Harness) -> None:
    """While the background work is stalled, 30 requests from one client leave only
    the 20 within its limit waiting: the other 10 are refused (audited ``throttled``)
    before the answer, which stays the same 200."""
    resets = harness.services.password_resets
    async with resets._serial:  # the background work waits, as under a flood
        answers = [
            await harness.client.post(
                INIT,
                content=f"flood{i}@example.test".encode(),
                headers={"Content-Type": "text/plain"},
            )
            for i in range(30)
        ]
        assert resets.pending == ResetLimits().per_client
    assert {(a.status_code, a.content) for a in answers} == {(200, b"")}
    await resets.settle()
    assert (resets.pending, resets.dropped) == (0, 0)


async def test_waiting_requests_are_bounded_and_the_excess_dropped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """From many client addresses (one request each, within every limit) at most
    ``ResetLimits.pending`` requests wait; the rest get the same 200, are counted as
    dropped and logged once; once the backlog drains, a genuine request is served."""
    await harness.create_user("alice")
    resets = harness.services.password_resets
    bound = ResetLimits().pending
    caplog.set_level(logging.WARNING, logger="authgate.services.password_resets")
    async with resets._serial:
        answers = []
        for i in range(bound + 15):
            async with harness.client_from(f"2001:db8:{i:x}::1") as client:
                answers.append(await client.post(INIT, content=f"flood{i}@example.test".encode()))
        assert resets.pending == bound
        assert resets.dropped == 15
    assert {(a.status_code, a.content) for a in answers} == {(200, b"")}
    dropped_lines = [r for r in caplog.records if "requests dropped" in r.getMessage()]
    assert len(dropped_lines) == 1  # at most one line a minute, however many are dropped

    await resets.settle()
    async with harness.client_from("192.0.2.77") as client:
        assert (await client.post(INIT, content=b"alice@example.com")).status_code == 200
    assert resets.dropped == 15
    await resets.settle()
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("PASSWORD_RESET_REQUESTED",)), PageRequest(size=200)
    )
    reasons = sorted(event.reason or "" for event in page.items)
    # the dropped ones are not audited; alice's request went through to the mail step
    assert reasons == sorted(["unknown_email"] * bound + ["mail_not_configured"])
