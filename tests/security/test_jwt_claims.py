"""The claim checks shared by the server's ``JwtCodec`` and the SDK's guard."""

from __future__ import annotations

from typing import Any

import pytest

from authgate.security.jwt_claims import LATEST_TIMESTAMP, ClaimsVerdict, check_claims, is_time

NOW = 1_800_000_000.0
LEEWAY = 30.0


def claims(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sub": "alice",
        "uid": 42,
        "auth": "ROLE_USER",
        "iat": NOW - 60.5,
        "exp": int(NOW) + 3600,
    }
    payload.update(changes)
    return {name: value for name, value in payload.items() if value is not None}


def check(payload: dict[str, Any], now: float = NOW) -> ClaimsVerdict:
    return check_claims(payload, now=now, leeway=LEEWAY)


def test_well_formed_claims_are_valid() -> None:
    """Claims of the right types, within their times, are "valid"; ``nbf`` and
    ``authenticated`` may be left out."""
    assert check(claims()) == "valid"
    assert check(claims(nbf=int(NOW) - 60, authenticated=True)) == "valid"


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": ""},
        {"sub": 7},
        {"auth": ["ROLE_USER"]},
        {"uid": "42"},
        {"uid": True},  # JSON's true is an int to Python
        {"uid": 4.2},
        {"authenticated": False},
        {"authenticated": 1},
        {"exp": "soon"},
        {"exp": True},
        {"iat": -1},
        {"nbf": LATEST_TIMESTAMP + 1},
        {"exp": 10**400},
    ],
    ids=repr,
)
def test_a_mistyped_claim_is_invalid(changes: dict[str, Any]) -> None:
    """Each mistyped or out-of-range claim alone makes the claims invalid."""
    assert check(claims(**changes)) == "invalid"


def test_a_mistyped_claim_wins_over_expiry() -> None:
    """Types are checked first: only a well-formed token learns that it expired."""
    assert check(claims(exp=int(NOW) - 3600, uid=True)) == "invalid"


def test_expiry_counts_the_leeway() -> None:
    """Valid up to ``exp`` + leeway, "expired" just after."""
    exp = int(NOW) - 10
    assert check(claims(exp=exp), now=exp + LEEWAY) == "valid"
    assert check(claims(exp=exp), now=exp + LEEWAY + 0.001) == "expired"


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_a_time_ahead_beyond_the_leeway_is_not_yet_valid(claim: str) -> None:
    """``iat`` or ``nbf`` up to the leeway ahead passes; further ahead, not yet valid."""
    assert check(claims(**{claim: NOW + LEEWAY})) == "valid"
    assert check(claims(**{claim: NOW + LEEWAY + 1})) == "not_yet_valid"


def test_expiry_wins_over_not_yet_valid() -> None:
    """A token both expired and not yet valid (exp before nbf) is "expired", as before."""
    payload = claims(nbf=NOW + 3600, exp=int(NOW) - 3600)
    assert check(payload) == "expired"


def test_is_time_takes_numbers_between_1970_and_9999() -> None:
    """Ints and floats within [0, 9999-12-31] are times; bools and strings are not."""
    assert [is_time(value) for value in (0, LATEST_TIMESTAMP, 1.5)] == [True] * 3
    assert [is_time(value) for value in (-1, LATEST_TIMESTAMP + 1, True, "1")] == [False] * 4
