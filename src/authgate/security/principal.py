"""Who is calling: the value every successful authentication produces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

# The roles live with their permissions; imported from here as they always were.
from authgate.security.permissions import KNOWN_AUTHORITIES as KNOWN_AUTHORITIES
from authgate.security.permissions import ROLE_ADMIN as ROLE_ADMIN
from authgate.security.permissions import ROLE_ANALYST as ROLE_ANALYST
from authgate.security.permissions import ROLE_USER as ROLE_USER
from authgate.security.permissions import ROLE_VIEWER as ROLE_VIEWER
from authgate.security.permissions import permissions_of

# API key scopes: read = safe methods only; write = everything the owner may do
# (except admin endpoints); admin = admin endpoints, only on keys of admins.
SCOPE_READ: Final = "read"
SCOPE_WRITE: Final = "write"
SCOPE_ADMIN: Final = "admin"
KNOWN_SCOPES: Final = frozenset({SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN})
# A key reads (safe methods) with either: ``write`` is everything but admin endpoints.
# A key with only ``admin`` or only configured scopes (``orders:write``) reads nothing
# that does not name its scopes.
READING_SCOPES: Final = frozenset({SCOPE_READ, SCOPE_WRITE})
# Further scopes may be configured for APIs behind forward-auth (``orders:write``).
SCOPE_PATTERN: Final = r"^[a-z][a-z0-9_.:-]{0,63}$"

AuthMethod = Literal["jwt", "api_key"]


@dataclass(frozen=True, slots=True)
class KeyReference:
    """Which stored API key a request used or tried (for the usage log and audit).

    ``key_pk`` is the key's database id (``api_keys.id``, stored as ``api_key_id`` in
    audit and usage rows); never shown: people see the key's ``public_id`` (a UUID), and
    its ``key_id`` is the public part of the key itself (``agk_<key_id>_...``)."""

    key_pk: int
    name: str
    owner_id: int


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``authorities`` are the roles in force for this request: for a token, the roles
    it was issued with that the user still holds (a removed role takes effect at once,
    an added one needs a new token); for an API key, the owner's current roles, without
    those that grant permissions (ROLE_ADMIN, ROLE_ANALYST, ROLE_VIEWER) unless the key
    has the ``admin`` scope. :attr:`permissions` follow from them.

    ``scopes`` is ``None`` for a token (the user's full rights) and the key's scopes for
    an API key; ``credential_id`` is the token's ``jti`` or the key's ``key_id``
    (``agk_<key_id>_...``); ``issued_at`` is a token's ``iat`` (None for a key).
    """

    user_id: int
    login: str
    authorities: frozenset[str]
    method: AuthMethod
    credential_id: str
    expires_at: datetime | None
    scopes: frozenset[str] | None = None
    api_key: KeyReference | None = None
    rate_limit: str | None = None  # the key's own limit ("100/minute"), if any
    session_id: str | None = None  # a v12 token's ``sid`` (its refresh-token session)
    # A token of a user who has a second factor, from a login that did not pass it
    # (issued before the factor was enabled, or through an allowed bypass).
    second_factor_missing: bool = False
    issued_at: datetime | None = None

    def has_authority(self, authority: str) -> bool:
        return authority in self.authorities

    @property
    def session_key(self) -> str:
        """What names this caller's session: a v12 session's id (the tokens its refreshes
        issue share it), else the token's (or key's) own id."""
        return self.session_id or self.credential_id

    @property
    def permissions(self) -> frozenset[str]:
        """What the roles in force permit (``security/permissions.py``)."""
        return permissions_of(self.authorities)

    def has_permission(self, permission: str) -> bool:
        return permission in permissions_of(self.authorities)

    @property
    def is_admin(self) -> bool:
        return ROLE_ADMIN in self.authorities

    @property
    def is_password_session(self) -> bool:
        """Whether the caller holds a user session from a password login (a token: only
        the password login issues them), as opposed to an API key, and one that passed
        the user's second factor when they have one. Setting credentials needs one."""
        return self.method == "jwt" and not self.second_factor_missing

    def may_read(self) -> bool:
        """Whether safe methods (GET, HEAD, OPTIONS) are within the scopes."""
        return self.scopes is None or not self.scopes.isdisjoint(READING_SCOPES)

    def may_write(self) -> bool:
        """Whether unsafe methods (POST, PUT, DELETE, ...) are within the scopes."""
        return self.scopes is None or SCOPE_WRITE in self.scopes


def parse_authorities(joined: str) -> frozenset[str]:
    """``"ROLE_ADMIN,ROLE_USER"`` → ``{"ROLE_ADMIN", "ROLE_USER"}`` (UTMStack's ``auth`` claim)."""
    return frozenset(part.strip() for part in joined.split(",") if part.strip())


def join_authorities(authorities: frozenset[str] | set[str]) -> str:
    """Inverse of :func:`parse_authorities`, in a stable order."""
    return ",".join(sorted(authorities))
