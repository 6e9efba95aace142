"""Who is calling: the value every successful authentication produces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

ROLE_ADMIN: Final = "ROLE_ADMIN"
ROLE_USER: Final = "ROLE_USER"
KNOWN_AUTHORITIES: Final = frozenset({ROLE_ADMIN, ROLE_USER})

AuthMethod = Literal["jwt", "api_key"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``authorities`` are the roles in force for this request: for a token, the roles
    it was issued with that the user still holds (a removed role takes effect at once,
    an added one needs a new token).
    """

    user_id: int
    login: str
    authorities: frozenset[str]
    method: AuthMethod
    credential_id: str
    expires_at: datetime | None

    def has_authority(self, authority: str) -> bool:
        return authority in self.authorities

    @property
    def is_admin(self) -> bool:
        return ROLE_ADMIN in self.authorities


def parse_authorities(joined: str) -> frozenset[str]:
    """``"ROLE_ADMIN,ROLE_USER"`` → ``{"ROLE_ADMIN", "ROLE_USER"}`` (UTMStack's ``auth`` claim)."""
    return frozenset(part.strip() for part in joined.split(",") if part.strip())


def join_authorities(authorities: frozenset[str] | set[str]) -> str:
    """Inverse of :func:`parse_authorities`, in a stable order."""
    return ",".join(sorted(authorities))
