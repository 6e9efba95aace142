"""Which finished requests the gate keeps a record of (``leaves_record``): the request
path skips ``Gate.record`` (and reading the user agent) for the others."""

from __future__ import annotations

from authgate.exceptions import TokenInvalid
from authgate.reasons import Reason
from authgate.security.principal import KeyReference, Principal
from authgate.services.gate import AuthFailure, Verdict, leaves_record


def _principal(key: KeyReference | None) -> Principal:
    return Principal(
        user_id=1,
        login="admin",
        authorities=frozenset(),
        method="api_key" if key else "jwt",
        credential_id="id",
        expires_at=None,
        api_key=key,
    )


def test_an_accepted_token_leaves_no_record() -> None:
    verdict = Verdict()
    verdict.principal = _principal(None)
    assert not leaves_record(verdict)


def test_an_unauthenticated_request_leaves_no_record() -> None:
    assert not leaves_record(Verdict())


def test_an_accepted_key_leaves_a_record() -> None:
    verdict = Verdict()
    verdict.principal = _principal(KeyReference(key_pk=7, name="ci", owner_id=1))
    assert leaves_record(verdict)


def test_every_refusal_leaves_a_record() -> None:
    refused = Verdict()
    refused.refuse(
        AuthFailure("jwt", Reason.EMPTY_BEARER), TokenInvalid(reason=Reason.EMPTY_BEARER)
    )
    assert leaves_record(refused)
    # Refused after authentication (a permission, a rate limit): still recorded.
    denied = Verdict()
    denied.principal = _principal(None)
    denied.refuse(AuthFailure("jwt", Reason.EMPTY_BEARER), TokenInvalid(reason=Reason.EMPTY_BEARER))
    assert leaves_record(denied)
