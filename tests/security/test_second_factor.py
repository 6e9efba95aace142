"""Second-factor primitives: TOTP windows and replay, recovery codes, the secret box."""

from __future__ import annotations

import os

import pyotp
import pytest

from authgate.security.second_factor import (
    SecondFactorKey,
    SecretUnreadable,
    matching_totp_step,
    new_recovery_codes,
    new_totp_secret,
    normalized_recovery_code,
    provisioning_uri,
    totp_code,
    totp_step,
    usable_totp_secret,
)

NOW = 1_800_000_015.0  # 15 s into a step


def test_totp_codes_match_an_independent_rfc6238_implementation() -> None:
    """The code of a step is the one any authenticator app shows (pyotp's own TOTP)."""
    secret = new_totp_secret()
    assert totp_code(secret, totp_step(NOW)) == pyotp.TOTP(secret).at(NOW)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_code_of_the_previous_current_or_next_step_is_accepted(offset: int) -> None:
    secret = new_totp_secret()
    step = totp_step(NOW) + offset
    assert matching_totp_step(secret, totp_code(secret, step), now=NOW, after_step=None) == step


@pytest.mark.parametrize("offset", [-2, 2])
def test_codes_two_steps_away_are_refused(offset: int) -> None:
    secret = new_totp_secret()
    code = totp_code(secret, totp_step(NOW) + offset)
    # (a two-step-away code equal to a code in the window by chance would be accepted)
    if code not in {totp_code(secret, totp_step(NOW) + d) for d in (-1, 0, 1)}:
        assert matching_totp_step(secret, code, now=NOW, after_step=None) is None


def test_window_edges_follow_the_clock() -> None:
    """The code two steps ahead comes into the window exactly when the next step begins,
    and the code one step back leaves it then."""
    secret = new_totp_secret()
    step = totp_step(NOW)
    ahead, behind = totp_code(secret, step + 2), totp_code(secret, step - 1)
    window_before = {totp_code(secret, s) for s in (step - 1, step, step + 1)}
    window_after = {totp_code(secret, s) for s in (step, step + 1, step + 2)}
    last_instant, next_step = (step + 1) * 30 - 0.001, (step + 1) * 30.0
    if ahead not in window_before:
        assert matching_totp_step(secret, ahead, now=last_instant, after_step=None) is None
    assert matching_totp_step(secret, ahead, now=next_step, after_step=None) is not None
    assert matching_totp_step(secret, behind, now=last_instant, after_step=None) == step - 1
    if behind not in window_after:
        assert matching_totp_step(secret, behind, now=next_step, after_step=None) is None


def test_a_step_already_used_is_never_accepted_again() -> None:
    secret = new_totp_secret()
    step = totp_step(NOW)
    code = totp_code(secret, step)
    assert matching_totp_step(secret, code, now=NOW, after_step=step) is None
    assert matching_totp_step(secret, code, now=NOW, after_step=step - 1) == step


FULL_WIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", FULL_WIDTH_DIGITS])
def test_malformed_codes_are_refused(code: str) -> None:
    assert matching_totp_step(new_totp_secret(), code, now=NOW, after_step=None) is None


def test_recovery_codes_are_ten_distinct_and_forgiving_to_type() -> None:
    codes = new_recovery_codes()
    assert len(set(codes)) == 10
    code = codes[0]
    assert normalized_recovery_code(code.upper().replace("-", " ")) == code
    assert normalized_recovery_code("not-a-code") is None


@pytest.mark.parametrize(
    ("typed", "secret"),
    [
        ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        ("jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        ("JBSW-Y3DP-EHPK-3PXP-JBSW-Y3DP", "JBSWY3DPEHPK3PXPJBSWY3DP"),
        ("MFRGGZDFMZTWQ2LKNNWG23Q=", "MFRGGZDFMZTWQ2LKNNWG23Q"),  # padded or not
        ("MFRGGZDFMZTWQ2LKNNWG23Q", "MFRGGZDFMZTWQ2LKNNWG23Q"),
    ],
)
def test_a_typed_secret_is_read_as_authenticator_apps_read_it(typed: str, secret: str) -> None:
    """Spaces, hyphens and case forgiven; the codes are those of the secret as typed."""
    assert usable_totp_secret(typed) == secret
    assert totp_code(secret, totp_step(NOW)) == pyotp.TOTP(secret).at(NOW)


@pytest.mark.parametrize(
    "typed",
    [
        "not base32!!",
        "",
        "   ",
        "JBSWY3DPEHPK3PX1JBSWY3DPEHPK3PXP",  # 1 is not a base32 digit
        "AB=CDAB=CDAB=CDAB=CDAB=CD",  # padding inside
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPA",  # 33 letters: no whole number of bytes
        "ß" * 24,  # upper-cases to base32 letters, but is not what was stored
        "JBSWY3DPEHPK3PXP",  # 80 bits: under the 112 pyotp requires
    ],
)
def test_a_secret_no_code_can_be_computed_from_is_refused(typed: str) -> None:
    assert usable_totp_secret(typed) is None


def test_provisioning_uri_names_issuer_and_login() -> None:
    uri = provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DP", login="alice", issuer="authgate")
    assert uri.startswith("otpauth://totp/authgate:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DP")
    assert "issuer=authgate" in uri


def test_secrets_are_encrypted_and_bound_to_their_user() -> None:
    key = SecondFactorKey(os.urandom(32))
    sealed = key.encrypt("JBSWY3DPEHPK3PXP", user_id=7)
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert key.decrypt(sealed, user_id=7) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(SecretUnreadable):
        key.decrypt(sealed, user_id=8)  # a row copied to another user
    with pytest.raises(SecretUnreadable):
        SecondFactorKey(os.urandom(32)).decrypt(sealed, user_id=7)  # another key


def test_code_hashes_depend_on_key_user_and_purpose() -> None:
    key = SecondFactorKey(os.urandom(32))
    one = key.code_hash("123456", user_id=1, purpose="email_login")
    assert one == key.code_hash("123456", user_id=1, purpose="email_login")
    assert one != key.code_hash("123456", user_id=2, purpose="email_login")
    assert one != key.code_hash("123456", user_id=1, purpose="recovery")
    assert "123456" not in repr(key)
