"""The JWT path: authgate's tokens verified locally against its JWKS, with rotation."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.utils import base64url_decode, base64url_encode

from authgate.guard import Guard, GuardConfig
from authgate.security.signing_keys import generate_signing_key
from authgate.security.tokens import JwtCodec
from tests.conftest import USER_PASSWORD, Harness, bearer
from tests.guard.conftest import (
    AUTHGATE_URL,
    JWKS,
    VERIFY,
    AuthgateTransport,
    GuardedService,
    GuardFactory,
    service_client,
)

TOKEN_TTL = timedelta(hours=1)
LEEWAY = timedelta(seconds=30)


async def get_things(service: GuardedService, token: str) -> Any:
    async with service_client(service.app) as client:
        return await client.get("/things", headers=bearer(token))


def rotate(harness: Harness) -> str:
    """Rotate authgate's signing keys as ``authgate signing-keys rotate`` does; the new kid."""
    tokens = harness.services.tokens
    new_key = generate_signing_key("ES256", now=harness.clock())
    ring = tokens.codec.keyring.rotated(new_key, now=harness.clock(), keep_for=timedelta(days=1))
    tokens.replace_codec(tokens.codec.with_keyring(ring))
    return new_key.kid


def codec_with(harness: Harness, **overrides: Any) -> JwtCodec:
    """A codec with authgate's real keys but other claims (issuer, audience)."""
    values: dict[str, Any] = {"issuer": "authgate", "audience": "authgate", "leeway": LEEWAY}
    values.update(overrides)
    return JwtCodec(harness.services.tokens.codec.keyring, **values)


def issue(codec: JwtCodec, harness: Harness) -> str:
    return codec.issue(
        subject="alice",
        user_id=1,
        authorities=frozenset({"ROLE_USER"}),
        now=harness.clock(),
        ttl=TOKEN_TTL,
    ).token


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def test_a_valid_token_passes_with_the_callers_identity(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A token from POST /api/authenticate is accepted; the handler sees who called."""
    service = GuardedService(make_guard())
    response = await get_things(service, user_token)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "login": "alice",
        "userId": 1,
        "roles": ["ROLE_USER"],
        "method": "jwt",
        "keyId": None,
        "scopes": None,
    }
    # Verified locally: authgate was asked for its keys, never about the token.
    assert authgate.count(JWKS) == 1
    assert authgate.count(VERIFY) == 0


async def test_the_jwks_is_cached_and_refetched_after_its_ttl(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Many requests share one JWKS fetch until jwks_ttl passes."""
    service = GuardedService(make_guard(jwks_ttl=300))
    for _ in range(5):
        assert (await get_things(service, user_token)).status_code == 200
    assert authgate.count(JWKS) == 1
    harness.clock.advance(seconds=301)
    assert (await get_things(service, user_token)).status_code == 200
    assert authgate.count(JWKS) == 2


async def test_the_jwks_deadlines_follow_the_monotonic_timer(
    harness: Harness, authgate: AuthgateTransport, user_token: str
) -> None:
    """jwks_ttl and the refetch interval count on the timer: a wall clock set back
    cannot keep a key set (say, one still holding a withdrawn key) in use longer."""
    ticks = [0.0]
    config = GuardConfig(authgate_url=AUTHGATE_URL, transport=authgate, jwks_ttl=300)
    guard = Guard(config, clock=lambda: harness.clock().timestamp(), timer=lambda: ticks[0])
    async with guard:
        service = GuardedService(guard)
        assert (await get_things(service, user_token)).status_code == 200
        ticks[0] += 299
        assert (await get_things(service, user_token)).status_code == 200
        assert authgate.count(JWKS) == 1
        ticks[0] += 1
        assert (await get_things(service, user_token)).status_code == 200
        assert authgate.count(JWKS) == 2


async def test_an_expired_token_is_refused_as_expired(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """Past exp (plus the leeway) a genuine token gets 401 token_expired."""
    service = GuardedService(make_guard(leeway=30))
    harness.clock.advance(seconds=TOKEN_TTL.total_seconds() + 29)
    assert (await get_things(service, user_token)).status_code == 200  # within the leeway
    harness.clock.advance(seconds=2)
    response = await get_things(service, user_token)
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert service.handled == 1


def hs256_signed_with(secret: bytes, payload: dict[str, Any], kid: str) -> str:
    """An HS256 token keyed with ``secret`` (PyJWT refuses to build this one itself)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = b".".join(
        base64url_encode(json.dumps(part).encode()) for part in (header, payload)
    )
    signature = base64url_encode(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def forged_tokens(harness: Harness, genuine: str) -> dict[str, str]:
    payload = jwt.decode(genuine, options={"verify_signature": False})
    kid = kid_of(genuine)
    other_key = generate_signing_key("ES256", now=harness.clock())
    public = harness.services.tokens.codec.keyring.active.public
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head, _, signature = genuine.split(".")
    admin_claims = base64url_encode(json.dumps({**payload, "sub": "admin"}).encode()).decode()
    return {
        "other key, real kid": jwt.encode(
            payload, other_key.private, algorithm="ES256", headers={"kid": kid}
        ),
        "unknown kid": jwt.encode(
            payload, other_key.private, algorithm="ES256", headers={"kid": other_key.kid}
        ),
        "alg none": jwt.encode(payload, "", algorithm="none", headers={"kid": kid}),
        "HS256 keyed with the public key": hs256_signed_with(public_pem, payload, kid),
        "tampered claims": f"{head}.{admin_claims}.{signature}",
        "no kid": jwt.encode(payload, other_key.private, algorithm="ES256"),
        "not a jwt": "definitely-not-a-token",
    }


async def test_forged_tokens_are_refused_alike(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """Forged, tampered or unsigned tokens all get the same 401 invalid_token."""
    service = GuardedService(make_guard())
    for name, token in forged_tokens(harness, user_token).items():
        response = await get_things(service, token)
        assert response.status_code == 401, name
        body = response.json()
        assert body["code"] == "invalid_token", name
        assert body["message"] == "Invalid token"
        assert set(body) == {"timestamp", "status", "error", "code", "message", "detail", "path"}
        assert body["status"] == 401
        assert body["path"] == "/things"
    assert service.handled == 0


async def test_another_spelling_of_a_genuine_token_is_refused_as_authgate_does(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """The genuine token with its signature padded (``==``) or with the unused low bits
    of its last character set: PyJWT decodes both to the same signature, authgate
    refuses them (one spelling per token), and so does the guard now."""
    service = GuardedService(make_guard())
    assert (await get_things(service, user_token)).status_code == 200
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head, last = user_token[:-1], user_token[-1]
    # ES256's 64-byte signature ends with 4 unused bits in its last character.
    flipped = head + alphabet[alphabet.index(last) ^ 1]
    signature = user_token.rsplit(".", 1)[1]
    assert base64url_decode(flipped.rsplit(".", 1)[1]) == base64url_decode(signature)
    for spelling in (user_token + "==", flipped):
        response = await get_things(service, spelling)
        assert response.status_code == 401, spelling[-4:]
        assert response.json()["code"] == "invalid_token"
        at_authgate = await harness.client.get("/api/account", headers=bearer(spelling))
        assert at_authgate.status_code == 401


@pytest.mark.parametrize("claim", ["issuer", "audience"])
async def test_a_token_for_another_issuer_or_audience_is_refused(
    harness: Harness, make_guard: GuardFactory, claim: str
) -> None:
    """A token signed by authgate's real key but naming another iss/aud gets 401."""
    await harness.create_user("alice", USER_PASSWORD)
    service = GuardedService(make_guard())
    assert (await get_things(service, issue(codec_with(harness), harness))).status_code == 200
    wrong = issue(codec_with(harness, **{claim: "someone-else"}), harness)
    response = await get_things(service, wrong)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_the_guard_can_be_told_to_expect_another_issuer(
    harness: Harness, make_guard: GuardFactory
) -> None:
    """The expected issuer comes from the guard's config, not from the token."""
    service = GuardedService(make_guard(issuer="authgate-prod"))
    prod = issue(codec_with(harness, issuer="authgate-prod"), harness)
    default = issue(codec_with(harness), harness)
    assert (await get_things(service, prod)).status_code == 200
    assert (await get_things(service, default)).status_code == 401


async def test_tokens_of_a_rotated_key_are_accepted_after_a_refetch(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """After authgate rotates its keys, the new kid makes the guard fetch the JWKS
    again (once the refetch interval allows); old tokens keep working."""
    service = GuardedService(make_guard(jwks_min_refetch_interval=10))
    assert (await get_things(service, user_token)).status_code == 200
    assert authgate.count(JWKS) == 1

    new_kid = rotate(harness)
    harness.clock.advance(seconds=11)
    new_token = await harness.login("alice", USER_PASSWORD)
    assert kid_of(new_token) == new_kid != kid_of(user_token)

    response = await get_things(service, new_token)
    assert response.status_code == 200, response.text
    assert response.json()["login"] == "alice"
    assert authgate.count(JWKS) == 2
    assert (await get_things(service, user_token)).status_code == 200  # old key still published
    assert authgate.count(JWKS) == 2


async def test_unknown_kids_cause_at_most_one_jwks_fetch_per_interval(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A flood of tokens with made-up kids costs authgate one JWKS request per interval,
    and a rotation inside the interval is seen once the interval has passed."""
    service = GuardedService(make_guard(jwks_min_refetch_interval=10))
    assert (await get_things(service, user_token)).status_code == 200
    payload = jwt.decode(user_token, options={"verify_signature": False})
    attacker_key = generate_signing_key("ES256", now=harness.clock())

    for number in range(20):
        made_up = jwt.encode(
            payload, attacker_key.private, algorithm="ES256", headers={"kid": f"kid-{number}"}
        )
        assert (await get_things(service, made_up)).status_code == 401
    assert authgate.count(JWKS) == 1  # all within 10 s of the first fetch

    rotate(harness)
    new_token = await harness.login("alice", USER_PASSWORD)
    harness.clock.advance(seconds=5)
    assert (await get_things(service, new_token)).status_code == 401  # not yet refetched
    assert authgate.count(JWKS) == 1
    harness.clock.advance(seconds=5)
    assert (await get_things(service, new_token)).status_code == 200
    assert authgate.count(JWKS) == 2
    for number in range(5):
        made_up = jwt.encode(
            payload, attacker_key.private, algorithm="ES256", headers={"kid": f"again-{number}"}
        )
        assert (await get_things(service, made_up)).status_code == 401
    assert authgate.count(JWKS) == 2


async def test_without_keys_authgate_down_means_503_and_nothing_passes(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """No JWKS can be fetched: the guard answers 503 and the handler never runs; the
    retries are rate-limited too."""
    service = GuardedService(make_guard(jwks_min_refetch_interval=10))
    authgate.down = True
    for _ in range(3):
        response = await get_things(service, user_token)
        assert response.status_code == 503
        assert response.json()["code"] == "authgate_unavailable"
    assert service.handled == 0
    assert authgate.count(JWKS) == 1
    authgate.down = False
    harness.clock.advance(seconds=10)
    assert (await get_things(service, user_token)).status_code == 200


async def test_cached_keys_serve_until_their_ttl_then_503(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Fetched keys keep verifying while authgate is down, but only for jwks_ttl:
    then the guard fails closed."""
    service = GuardedService(make_guard(jwks_ttl=300))
    assert (await get_things(service, user_token)).status_code == 200
    authgate.down = True
    harness.clock.advance(seconds=299)
    assert (await get_things(service, user_token)).status_code == 200
    harness.clock.advance(seconds=2)
    response = await get_things(service, user_token)
    assert response.status_code == 503
    assert service.handled == 2


async def test_a_jwks_that_is_not_a_key_set_means_503(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A wrong URL answering 200 with HTML (or a 500) is no reason to accept anything."""
    service = GuardedService(make_guard())
    authgate.status = 500
    assert (await get_things(service, user_token)).status_code == 503
    assert service.handled == 0


@pytest.mark.parametrize(
    "remote", [{"verify_jwt_locally": False}, {"local_jwt_max_age": 0}], ids=["remote", "age-0"]
)
async def test_remote_mode_sends_tokens_to_authgate_and_sees_logouts(
    harness: Harness,
    make_guard: GuardFactory,
    authgate: AuthgateTransport,
    user_token: str,
    remote: dict[str, Any],
) -> None:
    """verify_jwt_locally=False asks authgate, which knows about logouts; so does
    local_jwt_max_age=0 (every token is old enough to ask about)."""
    service = GuardedService(make_guard(**remote, key_cache_ttl=0))
    response = await get_things(service, user_token)
    assert response.status_code == 200
    assert response.json()["method"] == "jwt"
    assert authgate.count(VERIFY) == 1
    assert authgate.count(JWKS) == 0
    logout = await harness.client.post("/api/logout", headers=bearer(user_token))
    assert logout.status_code == 204
    response = await get_things(service, user_token)
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


async def test_keys_of_an_algorithm_not_configured_are_not_used(
    harness: Harness, make_guard: GuardFactory
) -> None:
    """A guard configured for EdDSA only ignores authgate's ES256 keys."""
    service = GuardedService(make_guard(algorithms=frozenset({"EdDSA"})))
    token = issue(codec_with(harness), harness)  # ES256
    assert (await get_things(service, token)).status_code == 401


async def test_a_pre_verification_token_is_refused(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport
) -> None:
    """A login's pre-verification token (the second factor still to come; its own
    audience, authenticated false) never passes the guard, though authgate signed it."""
    await harness.create_user("alice", USER_PASSWORD)
    user = await harness.services.accounts.authenticate("alice", USER_PASSWORD)
    pending = harness.services.tokens.issue_pre_verification(user, remember_me=False)
    service = GuardedService(make_guard())
    response = await get_things(service, pending.token)
    assert response.status_code == 401


# -- tokens older than local_jwt_max_age are checked by authgate too ---------------------------


async def test_a_fresh_token_is_verified_locally_only(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Younger than local_jwt_max_age (from its iat): no call to authgate's verify."""
    service = GuardedService(make_guard(local_jwt_max_age=300))
    harness.clock.advance(seconds=299)
    for _ in range(3):
        assert (await get_things(service, user_token)).status_code == 200
    assert authgate.count(VERIFY) == 0


async def test_a_logout_reaches_the_guard_once_the_token_is_older_than_the_max_age(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """The headline's "logout takes effect at once" holds at a guarded service within
    local_jwt_max_age: a logged-out token stops passing once it is that old (it passed
    until the token's expiry, up to 7 days for remember-me, before)."""
    service = GuardedService(make_guard(local_jwt_max_age=300, key_cache_ttl=10))
    assert (await get_things(service, user_token)).status_code == 200
    logout = await harness.client.post("/api/logout", headers=bearer(user_token))
    assert logout.status_code == 204
    assert (await get_things(service, user_token)).status_code == 200  # fresh: local only
    assert authgate.count(VERIFY) == 0
    harness.clock.advance(seconds=300)
    response = await get_things(service, user_token)
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"
    assert authgate.count(VERIFY) == 1
    assert service.handled == 2


async def test_a_removed_role_and_a_deactivation_reach_the_guard_within_the_max_age(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, admin_token: str
) -> None:
    """An old admin token is checked by authgate, which answers with the roles in
    force: a demoted admin loses the admin route, a deactivated one everything. The
    answer is cached for key_cache_ttl, as in remote mode."""
    await harness.create_user("carol", admin=True)
    carol = await harness.login("carol", USER_PASSWORD)
    service = GuardedService(make_guard(local_jwt_max_age=300, key_cache_ttl=10))

    async def admin_route() -> int:
        async with service_client(service.app) as client:
            response = await client.get("/admin", headers=bearer(carol))
            return int(response.status_code)

    harness.clock.advance(seconds=301)
    for _ in range(3):
        assert await admin_route() == 200
    assert authgate.count(VERIFY) == 1  # one call per cache period
    demoted = await harness.client.put(
        "/api/users/carol", json={"authorities": ["ROLE_USER"]}, headers=bearer(admin_token)
    )
    assert demoted.status_code == 200, demoted.text
    assert await admin_route() == 200  # the cached answer, for key_cache_ttl
    harness.clock.advance(seconds=10)
    assert await admin_route() == 403
    assert (await get_things(service, carol)).status_code == 200
    deactivated = await harness.client.put(
        "/api/users/carol", json={"activated": False}, headers=bearer(admin_token)
    )
    assert deactivated.status_code == 200, deactivated.text
    harness.clock.advance(seconds=10)
    assert (await get_things(service, carol)).status_code == 401


async def test_an_old_token_is_refused_with_503_while_authgate_cannot_be_asked(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """As in remote mode, the guard fails closed for a token it must ask about; a
    fresh token keeps passing on the cached keys."""
    service = GuardedService(make_guard(local_jwt_max_age=300, jwks_ttl=600))
    assert (await get_things(service, user_token)).status_code == 200
    harness.clock.advance(seconds=300)
    fresh = await harness.login("alice", USER_PASSWORD)
    authgate.down = True
    response = await get_things(service, user_token)
    assert response.status_code == 503
    assert response.json()["code"] == "authgate_unavailable"
    assert (await get_things(service, fresh)).status_code == 200


async def test_a_forged_old_token_is_refused_without_asking_authgate(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """The local checks come first: an old token that fails them costs authgate
    nothing (only validly signed ones are asked about)."""
    service = GuardedService(make_guard(local_jwt_max_age=300))
    harness.clock.advance(seconds=600)
    for name, token in forged_tokens(harness, user_token).items():
        response = await get_things(service, token)
        assert response.status_code == 401, name
    assert authgate.count(VERIFY) == 0


async def test_an_endless_jwks_answer_is_dropped_at_its_bound(user_token: str) -> None:
    """A JWK Set answer is read up to 256 KiB, then dropped (503): never buffered whole."""
    produced = [0]

    async def chunks() -> Any:
        while True:
            produced[0] += 1
            yield b" " * 65536

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=chunks())

    config = GuardConfig(authgate_url=AUTHGATE_URL, transport=httpx2.MockTransport(answer))
    async with Guard(config) as guard:
        response = await get_things(GuardedService(guard), user_token)
    assert response.status_code == 503, response.text
    assert produced[0] <= 5
