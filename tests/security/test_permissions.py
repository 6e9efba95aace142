"""The permission registry and the rule against escalation through roles."""

from __future__ import annotations

from authgate.security.permissions import (
    ALL_PERMISSIONS,
    BUILT_IN_ROLES,
    PRIVILEGED_ROLES,
    READ_PERMISSIONS,
    ROLES_BY_NAME,
    permissions_of,
    role_change_refusal,
)
from authgate.security.principal import KNOWN_AUTHORITIES, Principal

ADMIN = frozenset({"ROLE_ADMIN", "ROLE_USER"})
VIEWER = frozenset({"ROLE_VIEWER", "ROLE_USER"})
USER = frozenset({"ROLE_USER"})


def test_the_built_in_roles() -> None:
    assert {"ROLE_ADMIN", "ROLE_ANALYST", "ROLE_VIEWER", "ROLE_USER"} == KNOWN_AUTHORITIES
    assert ROLES_BY_NAME["ROLE_ADMIN"].permissions == ALL_PERMISSIONS
    assert ROLES_BY_NAME["ROLE_VIEWER"].permissions == READ_PERMISSIONS
    analyst = ROLES_BY_NAME["ROLE_ANALYST"].permissions
    assert READ_PERMISSIONS < analyst < ALL_PERMISSIONS
    assert not analyst & {"users.write", "users.delete", "roles.write", "api_keys.write"}
    assert ROLES_BY_NAME["ROLE_USER"].permissions == frozenset()
    assert {"ROLE_ADMIN", "ROLE_ANALYST", "ROLE_VIEWER"} == PRIVILEGED_ROLES
    assert all(role.description for role in BUILT_IN_ROLES)


def test_permissions_of_combines_roles_and_ignores_unknown_names() -> None:
    assert permissions_of(frozenset({"ROLE_VIEWER", "ROLE_ANALYST"})) == (
        ROLES_BY_NAME["ROLE_ANALYST"].permissions
    )
    assert permissions_of(frozenset({"ROLE_ROOT", "ROLE_USER"})) == frozenset()


def test_a_principal_has_the_permissions_of_its_roles_in_force() -> None:
    principal = Principal(
        user_id=1,
        login="vera",
        authorities=VIEWER,
        method="jwt",
        credential_id="j",
        expires_at=None,
    )
    assert principal.has_permission("users.read")
    assert not principal.has_permission("users.write")
    assert principal.permissions == READ_PERMISSIONS


def test_role_changes_need_roles_write_and_no_more_than_the_callers_permissions() -> None:
    admin = permissions_of(ADMIN)
    viewer = permissions_of(VIEWER)
    assert role_change_refusal(admin, USER, ADMIN) is None
    assert role_change_refusal(admin, ADMIN, USER) is None
    # A caller without roles.write may still create plain users and leave roles alone.
    assert role_change_refusal(viewer, frozenset(), USER) is None
    assert role_change_refusal(viewer, VIEWER, VIEWER) is None
    refusal = role_change_refusal(viewer, USER, ADMIN)
    assert refusal is not None
    assert "roles.write" in refusal
    assert role_change_refusal(viewer, VIEWER, USER) is not None  # taking needs it too
    # roles.write alone does not let a caller hand out permissions they lack.
    partial = frozenset({"roles.write", "users.read"})
    beyond = role_change_refusal(partial, USER, VIEWER)
    assert beyond is not None
    assert "audit.read" in beyond
