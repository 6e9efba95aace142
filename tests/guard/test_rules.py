"""authgate's forward-auth rules and the guard: they bind what reaches
``/api/auth/verify`` - API keys always, JWTs only with ``verify_jwt_locally=False``
(the README says so; this pins both halves).

No ``from __future__ import annotations``, as in the guard's conftest."""

from pathlib import Path

import pytest

from authgate.services.forward_auth import ForwardAuthRuleSetting
from authgate.settings import Settings
from tests.conftest import bearer, test_settings
from tests.guard.conftest import AuthgateTransport, GuardedService, GuardFactory, service_client

VERIFY = "/api/auth/verify"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """authgate refuses everyone on ``/things`` by a rule (and trusts the guard)."""
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        trusted_proxies=["127.0.0.1"],
        forward_auth_rules=[ForwardAuthRuleSetting(path_prefix="/things", allow=False)],
    )


async def get_things(service: GuardedService, token: str) -> int:
    async with service_client(service.app) as client:
        response = await client.get("/things", headers=bearer(token))
    return response.status_code


async def test_rules_bind_tokens_sent_to_authgate_not_tokens_verified_locally(
    make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    remote = GuardedService(make_guard(verify_jwt_locally=False, key_cache_ttl=0))
    assert await get_things(remote, user_token) == 403
    assert authgate.count(VERIFY) == 1
    local = GuardedService(make_guard())
    assert await get_things(local, user_token) == 200  # the documented gap
    assert authgate.count(VERIFY) == 1
