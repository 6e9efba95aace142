"""The SDK's view of roles: ``roles()`` lists each role with its permissions."""

from __future__ import annotations

import pytest

from authgate.client import PasswordCredentials, PermissionDeniedError, Role
from tests.client.support import USER_PASSWORD, asgi_client
from tests.conftest import ADMIN_PASSWORD, Harness


async def test_roles_lists_every_role_with_its_permissions(harness: Harness) -> None:
    await harness.create_user("root", ADMIN_PASSWORD, admin=True)
    async with asgi_client(harness, PasswordCredentials("root", ADMIN_PASSWORD)) as admin:
        roles = {role.name: role for role in await admin.roles()}
        account = await admin.account()
    assert set(roles) == {"ROLE_ADMIN", "ROLE_ANALYST", "ROLE_VIEWER", "ROLE_USER"}
    assert isinstance(roles["ROLE_VIEWER"], Role)
    assert "users.read" in roles["ROLE_VIEWER"].permissions
    assert "users.write" not in roles["ROLE_VIEWER"].permissions
    # The caller's own permissions: those of the roles on their account.
    mine = {p for name in account.authorities for p in roles[name].permissions}
    assert "roles.write" in mine


async def test_roles_needs_roles_read(harness: Harness) -> None:
    await harness.create_user("alice", USER_PASSWORD)
    async with asgi_client(harness, PasswordCredentials("alice", USER_PASSWORD)) as alice:
        with pytest.raises(PermissionDeniedError):
            await alice.roles()
