"""The Settings UI's user form reactivates like the REST API: with
``AUTHGATE_API_KEY_RESUME_ON_REACTIVATION`` the keys its deactivation suspended work again
(the REST side: tests/api/test_key_resume_on_reactivation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.settings import Settings
from tests.conftest import Harness, test_settings
from tests.web.conftest import Browser, redirect_target
from tests.web.test_key_remediation_pages import alice_key, status_of


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return test_settings(
        tmp_path / "data", database_url=database_url, api_key_resume_on_reactivation=True
    )


async def test_the_user_form_resumes_the_keys_when_configured(
    harness: Harness, admin: Browser, alice_id: int
) -> None:
    _, key = await alice_key(harness, alice_id)
    off = await admin.post("/settings/users/alice/edit", {"roles": ["ROLE_USER"]})
    assert redirect_target(off).startswith("/settings/users")
    assert await status_of(harness, key) == 401
    on = await admin.post("/settings/users/alice/edit", {"roles": ["ROLE_USER"], "activated": "on"})
    assert redirect_target(on).startswith("/settings/users")
    assert await status_of(harness, key) == 200
