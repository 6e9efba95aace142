"""Who is calling the guarded service, and what a route requires of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from authgate.guard._errors import REALM, AccessDenied

__all__ = ["AuthMethod", "GuardPrincipal", "Requirement"]

AuthMethod = Literal["jwt", "api_key"]


@dataclass(frozen=True, slots=True)
class GuardPrincipal:
    """An authenticated caller, as authgate vouches for them.

    ``roles`` are the roles in force (``ROLE_USER``, ``ROLE_ADMIN``, ``ROLE_ANALYST``,
    ``ROLE_VIEWER``; an API key has the roles that grant permissions only with its
    ``admin`` scope) and ``permissions`` what they grant (``users.read``, ...).
    ``scopes`` is ``None`` for a user's token, which carries the user's full rights,
    and the key's scopes for an API key, exactly as in authgate; ``key_id`` is the
    key's public id (``None`` for a token).
    """

    login: str
    user_id: int
    roles: frozenset[str]
    method: AuthMethod
    key_id: str | None = None
    scopes: frozenset[str] | None = None
    permissions: frozenset[str] = frozenset()

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_permission(self, permission: str) -> bool:
        return permission in self.permissions

    def has_scope(self, scope: str) -> bool:
        """Whether the credential's scopes allow ``scope`` (always, for a user's token)."""
        return self.scopes is None or scope in self.scopes


@dataclass(frozen=True, slots=True)
class Requirement:
    """All of ``scopes`` (they limit API keys only), one of ``roles``, if any given, and
    all of ``permissions``."""

    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
    ) -> Requirement:
        if any(isinstance(names, str) for names in (scopes, roles, permissions)):
            # "read" would silently become {"r", "e", "a", "d"}.
            raise TypeError(
                "scopes, roles and permissions are collections of names, not one string"
            )
        return cls(
            scopes=frozenset(scopes), roles=frozenset(roles), permissions=frozenset(permissions)
        )

    def check(self, principal: GuardPrincipal) -> None:
        """Nothing when ``principal`` meets it; raises ``AccessDenied`` (403) otherwise."""
        if self.roles and not self.roles & principal.roles:
            raise AccessDenied(
                f"This resource needs one of the roles {', '.join(sorted(self.roles))}",
                code="role_required",
                headers=_INSUFFICIENT,
            )
        lacking = sorted(self.permissions - principal.permissions)
        if lacking:
            raise AccessDenied(
                f"This resource needs the permission {', '.join(lacking)}",
                code="permission_required",
                headers=_INSUFFICIENT,
            )
        missing = sorted(scope for scope in self.scopes if not principal.has_scope(scope))
        if missing:
            raise AccessDenied(
                f"The API key lacks the scope {', '.join(missing)} for this request",
                code="insufficient_scope",
                headers=_INSUFFICIENT,
            )


_INSUFFICIENT = {"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'}
