"""A user as the layers above storage see it, what creating or changing one asks
for, and the rules a user's fields follow (the REST API, the CLI and the UTMStack
import check the same ones)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from authgate.exceptions import FieldError
from authgate.security.principal import KNOWN_AUTHORITIES, ROLE_USER, parse_authorities
from authgate.services.ports import UserColumns
from authgate.services.text_rules import control_character_errors

LOGIN_PATTERN: Final = r"^[_.@A-Za-z0-9-]{1,50}$"
LOGIN_MAX_LENGTH: Final = 50
# No spaces or control characters (PostgreSQL refuses NUL, logs must stay one line), and
# none of the characters that separate or quote addresses in a mail header (,;<>): an
# address the mailer would refuse is no address (the Unicode review: each mailed code to
# one was a 500). ``email_errors`` also refuses what the pattern cannot say.
EMAIL_PATTERN: Final = r"^[^@\s\x00-\x1f\x7f,;<>]+@[^@\s\x00-\x1f\x7f,;<>]+$"
EMAIL_MAX_LENGTH: Final = 254
NAME_MAX_LENGTH: Final = 50
LANG_KEY_PATTERN: Final = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
IMAGE_URL_MAX_LENGTH: Final = 256
# UTMStack's own accounts: its user list hides ``system`` and ``user`` (the Angular
# user-management.component.ts ``usrHides``) and its backend ``anonymoususer``
# (JHipster's Constants.ANONYMOUS_USER), so a user called so would be an account no
# admin sees there. ``system`` is also who ``createdBy`` names for the CLI.
UTMSTACK_BUILT_IN_LOGINS: Final = frozenset({"anonymoususer", "system", "user"})
# GET /api/users/authorities is a list of roles, so no user may be called that either.
RESERVED_LOGINS: Final = UTMSTACK_BUILT_IN_LOGINS | {"authorities"}

_LOGIN_RE = re.compile(LOGIN_PATTERN)
_EMAIL_RE = re.compile(EMAIL_PATTERN)
_LANG_KEY_RE = re.compile(LANG_KEY_PATTERN)


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as the layers above storage see it (never the password hash)."""

    id: int
    login: str
    email: str
    first_name: str | None
    last_name: str | None
    lang_key: str
    activated: bool
    authorities: frozenset[str]
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime | None
    tokens_valid_after: datetime | None
    created_by: str | None = None
    last_modified_by: str | None = None
    image_url: str | None = None
    activation_pending: bool = False
    second_factor: str | None = None  # "TOTP", "EMAIL" or None
    # Set by someone else and not changed since (UTMStack's ``firstLogin``).
    initial_password: bool = False
    # Imported from UTMStack with its default password: must choose a new one.
    password_change_required: bool = False
    public_id: str = ""  # the UUID v12's routes name the user by
    # When the row was read that a login checked the password against, or that a
    # login's second step or a v12 refresh checked (None: nothing is issued on it).
    read_at: datetime | None = None

    def credentials_as_of(self, now: datetime) -> datetime:
        """The issue time of a token or session resting on this view: no later than the
        login read the password it checked (or the second step, the refresh, the user).
        A reset, deactivation or "log out everywhere" that commits while the password is
        hashed (queued up to seconds), or the code checked, then refuses it, as it
        refuses every token issued before it; stamped ``now`` such a token outlived the
        reset (the two-node race review)."""
        read_at = self.read_at
        return now if read_at is None or read_at > now else read_at

    @classmethod
    def of(cls, user: UserColumns, *, read_at: datetime | None = None) -> UserView:
        return cls(
            read_at=read_at,
            id=user.id,
            login=user.login,
            email=user.email,
            first_name=user.first_name,
            last_name=user.last_name,
            lang_key=user.lang_key,
            activated=user.activated,
            authorities=parse_authorities(user.authorities),
            created_at=user.created_at,
            updated_at=user.updated_at,
            password_changed_at=user.password_changed_at,
            tokens_valid_after=user.tokens_valid_after,
            created_by=user.created_by,
            last_modified_by=user.last_modified_by,
            image_url=user.image_url,
            activation_pending=bool(user.activation_pending),
            second_factor=user.second_factor,
            initial_password=bool(user.initial_password),
            password_change_required=bool(user.password_change_required),
            public_id=user.public_id,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NewUser:
    """A user to create. Without a password (``None``) the user gets a random one
    nobody sees, stays inactive and receives a single-use reset key instead (UTMStack's
    invitation: the user chooses a password through the reset link)."""

    login: str
    email: str
    password: str | None
    authorities: frozenset[str] = frozenset({ROLE_USER})
    first_name: str | None = None
    last_name: str | None = None
    lang_key: str = "en"
    activated: bool = True
    image_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserChanges:
    """Fields to change; ``None`` keeps the current value. ``login`` renames the user
    (the caller decides whether a login it was given selects or renames)."""

    login: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    lang_key: str | None = None
    activated: bool | None = None
    authorities: frozenset[str] | None = None
    image_url: str | None = None

    def replaces_email(self, current: str) -> bool:
        """Whether the user's e-mail becomes another address (compared as stored). The
        address receives password-reset links and e-mailed sign-in codes, so setting it
        sets a credential."""
        return self.email is not None and self.email.strip().lower() != current

    def renames(self, current: str) -> bool:
        """Whether the user gets another login (compared as stored). The login is the
        name a user signs in with and the identity tokens and forward-auth present."""
        return self.login is not None and self.login.strip().lower() != current


def image_url_errors(image_url: str | None) -> list[FieldError]:
    if image_url is None:
        return []
    if len(image_url) > IMAGE_URL_MAX_LENGTH:
        return [FieldError("imageUrl", "imageUrl must be at most 256 characters.")]
    return control_character_errors("imageUrl", image_url)


def user_field_errors(
    *, login: str, email: str, first_name: str | None, last_name: str | None, lang_key: str
) -> list[FieldError]:
    """What is wrong with a user's login, e-mail and profile (imports check these too)."""
    return [
        *login_errors(login),
        *email_errors(email),
        *profile_errors(first_name, last_name, lang_key),
    ]


def login_errors(login: str) -> list[FieldError]:
    """What is wrong with a new login (compared lower-cased, as logins are stored)."""
    if login.lower() in UTMSTACK_BUILT_IN_LOGINS:
        built_in = "UTMStack's built-in account, hidden in its UI"
        return [FieldError("login", f"The login {login!r} is reserved: {built_in}.")]
    if login.lower() in RESERVED_LOGINS:
        return [FieldError("login", f"The login {login!r} is reserved.")]
    if not _LOGIN_RE.fullmatch(login):
        return [
            FieldError("login", "Login must be 1-50 characters: letters, digits, and _ . @ - only.")
        ]
    return []


def email_errors(email: str) -> list[FieldError]:
    if len(email) > EMAIL_MAX_LENGTH or not _EMAIL_RE.fullmatch(email):
        return [FieldError("email", "Email must be a valid address of at most 254 characters.")]
    # C1 controls, bidirectional overrides and invisible format characters (a zero-width
    # space): an address shown as another one (``\u202e`` reversing it) in the Settings
    # pages, the CLI and mail headers.
    if control_character_errors("email", email) or any(
        unicodedata.category(character) == "Cf" for character in email
    ):
        return [FieldError("email", "Email must not contain control or invisible characters.")]
    return []


def profile_errors(
    first_name: str | None, last_name: str | None, lang_key: str | None
) -> list[FieldError]:
    errors = []
    for field, value in (("firstName", first_name), ("lastName", last_name)):
        if value is not None and len(value) > NAME_MAX_LENGTH:
            errors.append(
                FieldError(field, f"{field} must be at most {NAME_MAX_LENGTH} characters.")
            )
        errors.extend(control_character_errors(field, value))
    if lang_key is not None and not _LANG_KEY_RE.fullmatch(lang_key):
        errors.append(FieldError("langKey", "langKey must be a language tag such as 'en'."))
    return errors


def authority_errors(authorities: frozenset[str]) -> list[FieldError]:
    if not authorities:
        return [FieldError("authorities", "At least one authority is required.")]
    unknown = sorted(authorities - KNOWN_AUTHORITIES)
    if unknown:
        known = ", ".join(sorted(KNOWN_AUTHORITIES))
        return [FieldError("authorities", f"Unknown authority; use {known}.")]
    return []
