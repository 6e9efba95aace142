"""With every accepted API-key request audited (``AUTHGATE_AUDIT_API_KEY_SUCCESSES``), a
process's records of a key keep the order of its requests: the ordinary ones wait in the
usage log's queue behind the key's notable ones (``notable_use``). Recorded at once,
they came before the key's first use, which waits for the usage flush; the key_new_ip
rule, which skips the key's very first record, then took the attacker's use for it and
named the legitimate address instead (the diff review)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.services.alerts.rules import RuleSpec
from authgate.settings import Settings
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.api.test_api_keys import key_header
from tests.conftest import Harness, test_settings

NEW_ADDRESS = "API key used from a new address (test)"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    base = test_settings(tmp_path / "data", database_url=database_url)
    every_success = base.audit.model_copy(update={"api_key_successes": True})
    return base.model_copy(update={"audit": every_success})


async def test_the_new_address_alert_names_the_new_address(
    harness: Harness, user_token: str
) -> None:
    services = harness.services
    await services.alert_rules.create(
        RuleSpec(name=NEW_ADDRESS, kind="key_new_ip", threshold=1, window_seconds=3600,
                 severity="medium"),
        audited=False,
    )  # fmt: skip
    created = await harness.create_key(user_token, allowedIp=["127.0.0.1", "198.51.100.9"])
    headers = key_header(created["key"])
    await services.audit.flush()
    await services.alerts.evaluate_new_events()  # past what setting up wrote
    assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
    async with harness.client_from("198.51.100.9") as other:
        for _ in range(2):
            assert (await other.get("/api/account", headers=headers)).status_code == 200
    # The two writers' timers are independent: the audit trail's may come first.
    await services.audit.flush()
    await services.usage.flush()
    await services.audit.flush()

    page = await services.audit.search(
        AuditFilter(event_types=("API_KEY_ACCESS_SUCCESS",)), PageRequest(size=100)
    )
    trail = [(e.reason, e.client_ip) for e in sorted(page.items, key=lambda e: e.id)]
    assert trail == [
        ("first_use", "127.0.0.1"),
        ("new_address", "198.51.100.9"),
        (None, "198.51.100.9"),
    ]
    await services.alerts.evaluate_new_events()
    fired = await services.alerts.recent(PageRequest(size=100))
    subjects = [a.subject for a in fired.items if a.rule_name == NEW_ADDRESS]
    assert subjects == [f"key:{created['id']}|ip:198.51.100.9"]
