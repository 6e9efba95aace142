"""Permissions and the built-in roles that grant them (UTMStack v12's model).

A role is a named set of permissions; users keep storing role names
(``users.authorities``), so a role's permissions are what this module says they are,
today, for every token and key at once. The admin API checks permissions, not role
names, so ROLE_ADMIN (every permission) keeps every right it had.

ROLE_USER grants no permission: it is the v10/v11 normal user, whose rights are over
their own account (profile, password, second factor, sessions, API keys), which every
signed-in user has whatever their roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from uuid import UUID, uuid5

ROLE_ADMIN: Final = "ROLE_ADMIN"
ROLE_ANALYST: Final = "ROLE_ANALYST"
ROLE_VIEWER: Final = "ROLE_VIEWER"
ROLE_USER: Final = "ROLE_USER"

USERS_READ: Final = "users.read"
USERS_WRITE: Final = "users.write"
USERS_DELETE: Final = "users.delete"
ROLES_READ: Final = "roles.read"
# Giving and taking roles; PUT /api/v1/users/{id}/roles also needs users.write.
ROLES_WRITE: Final = "roles.write"
# Every user's keys (the key review, listing and revoking keys of others).
API_KEYS_READ: Final = "api_keys.read"
API_KEYS_WRITE: Final = "api_keys.write"
AUDIT_READ: Final = "audit.read"
ALERTS_READ: Final = "alerts.read"
ALERTS_WRITE: Final = "alerts.write"
METRICS_READ: Final = "metrics.read"
# authgate's own configuration kept in the database: the service credentials.
SETTINGS_READ: Final = "settings.read"
SETTINGS_WRITE: Final = "settings.write"

ALL_PERMISSIONS: Final = frozenset(
    {
        USERS_READ,
        USERS_WRITE,
        USERS_DELETE,
        ROLES_READ,
        ROLES_WRITE,
        API_KEYS_READ,
        API_KEYS_WRITE,
        AUDIT_READ,
        ALERTS_READ,
        ALERTS_WRITE,
        METRICS_READ,
        SETTINGS_READ,
        SETTINGS_WRITE,
    }
)
READ_PERMISSIONS: Final = frozenset(p for p in ALL_PERMISSIONS if p.endswith(".read"))

# What each permission allows, as v12's permission catalogue (``GET /api/v1/roles/permissions``)
# shows it.
PERMISSION_DESCRIPTIONS: Final = {
    USERS_READ: "List and view users",
    USERS_WRITE: "Create and update users (giving roles also needs roles.write)",
    USERS_DELETE: "Deactivate users",
    ROLES_READ: "List and view roles and the permission catalogue",
    ROLES_WRITE: "Give and take roles that grant permissions",
    API_KEYS_READ: "List and view every user's API keys",
    API_KEYS_WRITE: "Revoke and re-enable every user's API keys",
    AUDIT_READ: "List and view the audit trail",
    ALERTS_READ: "List and view alert rules and alerts",
    ALERTS_WRITE: "Create, update and delete alert rules",
    METRICS_READ: "Read the Prometheus metrics",
    SETTINGS_READ: "List and view the service credentials",
    SETTINGS_WRITE: "Create, rotate and revoke the service credentials",
}

# The id of an authgate role v12 does not seed (ROLE_USER): uuid5 of this namespace
# and the role's name, the same on every installation.
ROLE_ID_NAMESPACE: Final = UUID("3a45a592-8d0f-4dda-80e1-2c26ed0d92a2")


@dataclass(frozen=True, slots=True)
class Role:
    """A built-in role. ``id`` is what v12's ``/api/v1/roles/{id}`` names it by: v12's
    own seeded id for the roles v12 has, so an id a v12 client knows names the same
    role here."""

    name: str
    display_name: str
    description: str
    permissions: frozenset[str]
    id: UUID


# An analyst watches and triages: every read, and alert rules (the one write that is
# about detection, not about who may do what). Never users, roles or other people's
# keys: regenerating someone else's key would hand the analyst that person's rights.
# Display names and the ids of the first three are those of v12's seed (its
# migrations/000001_init.up.sql).
BUILT_IN_ROLES: Final = (
    Role(
        ROLE_ADMIN,
        "Administrator",
        "Administrator: every permission.",
        ALL_PERMISSIONS,
        UUID("00000000-0000-0000-0000-00000000a001"),
    ),
    Role(
        ROLE_ANALYST,
        "Analyst",
        "Analyst: every read, and manages alert rules.",
        READ_PERMISSIONS | {ALERTS_WRITE},
        UUID("00000000-0000-0000-0000-00000000a002"),
    ),
    Role(
        ROLE_VIEWER,
        "Viewer",
        "Viewer: every read, no change.",
        READ_PERMISSIONS,
        UUID("00000000-0000-0000-0000-00000000a003"),
    ),
    Role(
        ROLE_USER,
        "User",
        "User: their own account, sessions and API keys.",
        frozenset(),
        uuid5(ROLE_ID_NAMESPACE, ROLE_USER),
    ),
)
ROLES_BY_NAME: Final = {role.name: role for role in BUILT_IN_ROLES}
ROLES_BY_ID: Final = {role.id: role for role in BUILT_IN_ROLES}
KNOWN_AUTHORITIES: Final = frozenset(ROLES_BY_NAME)
# The roles that grant permissions: an API key holds them only with the admin scope.
PRIVILEGED_ROLES: Final = frozenset(role.name for role in BUILT_IN_ROLES if role.permissions)
_UNPRIVILEGED_ROLES: Final = KNOWN_AUTHORITIES - PRIVILEGED_ROLES


def could_grant_permissions(names: object) -> bool:
    """Whether a request body's role names could hand out a permission: false only for
    a list of strings each exactly the name of a role that grants none (ROLE_USER).
    Anything else counts: a privileged role, a name padded, cased or unknown (a lenient
    reader further on may still map ``" ROLE_ADMIN"`` to ROLE_ADMIN), a value of another
    type. It decides whether a caller must be a password session, so it never guesses in
    the caller's favour, whatever the endpoint's own validation later makes of the body.
    """
    if not isinstance(names, list):
        return True
    return not all(isinstance(name, str) and name in _UNPRIVILEGED_ROLES for name in names)


@lru_cache(maxsize=256)
def permissions_of(authorities: frozenset[str]) -> frozenset[str]:
    """The permissions the roles grant together (unknown role names grant nothing).
    Cached: a handful of distinct role sets serve every request."""
    granted: set[str] = set()
    for name in authorities:
        role = ROLES_BY_NAME.get(name)
        if role is not None:
            granted |= role.permissions
    return frozenset(granted)


def role_change_refusal(
    caller_permissions: frozenset[str], current: frozenset[str], wanted: frozenset[str]
) -> str | None:
    """Why a caller with ``caller_permissions`` may not turn a user's roles from
    ``current`` into ``wanted``, or ``None`` when they may.

    Giving or taking a role that grants permissions needs ``roles.write``, and nobody
    hands out a permission they do not hold themselves (no escalation through a role,
    whatever a future role's permissions). ROLE_USER grants none: anyone who may write
    users may give it.
    """
    changed = (current ^ wanted) & PRIVILEGED_ROLES
    if not changed:
        return None
    if ROLES_WRITE not in caller_permissions:
        return f"Giving or taking roles needs the {ROLES_WRITE} permission"
    beyond = permissions_of(frozenset(wanted - current)) - caller_permissions
    if beyond:
        return "You cannot grant permissions you do not hold: " + ", ".join(sorted(beyond))
    return None
