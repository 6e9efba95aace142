"""Known JWT attacks: each must end in a ``TokenRejected`` (never another exception), first
against ``JwtCodec.verify`` directly, then end to end against ``GET /api/account``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authgate.exceptions import TokenExpired, TokenInvalid, TokenRejected
from authgate.security.signing_keys import (
    KeyRing,
    SigningKey,
    generate_signing_key,
    hmac_signing_key,
)
from authgate.security.tokens import JwtCodec
from tests.conftest import Harness, bearer

ISSUER = "authgate"
AUDIENCE = "authgate"
LEEWAY = timedelta(seconds=30)
NOW = datetime.now(UTC).replace(microsecond=0)
HMAC_SECRET = bytes(range(64))
OTHER_HMAC_SECRET = bytes(range(100, 164))

ALGORITHMS = ["ES256", "EdDSA", "HS512"]
ASYMMETRIC = ["ES256", "EdDSA"]
REQUIRED_CLAIMS = ["sub", "uid", "auth", "exp", "iat", "jti", "iss", "aud"]
MISSING = object()  # marks a claim to delete


# -- crafting tokens ------------------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def forge(header: Any, payload: Any, signature: bytes = b"") -> str:
    """A token assembled by hand, with whatever signature bytes the attacker chose."""
    return f"{b64url_json(header)}.{b64url_json(payload)}.{b64url(signature)}"


def hmac_forge(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HMAC-signed token built without PyJWT (which refuses PEM keys as HMAC secrets)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    mac = hmac.new(secret, signing_input.encode("ascii"), digest[header["alg"]]).digest()
    return f"{signing_input}.{b64url(mac)}"


def claims(now: datetime = NOW, **changes: Any) -> dict[str, Any]:
    """A complete, valid payload at ``now``; ``name=MISSING`` deletes a claim."""
    payload: dict[str, Any] = {
        "sub": "alice",
        "auth": "ROLE_USER",
        "authenticated": True,
        "uid": 42,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": round(now.timestamp(), 3),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
        "jti": "a-token-id",
    }
    payload.update(changes)
    return {name: value for name, value in payload.items() if value is not MISSING}


def sign(key: SigningKey, payload: dict[str, Any], *, kid: Any = MISSING) -> str:
    """``payload`` signed properly with ``key``; kid defaults to the key's own, None omits it."""
    if kid is MISSING:
        kid = key.kid
    headers = {} if kid is None else {"kid": kid}
    # PyJWS, not jwt.encode: the latter refuses some of the malformed claims tested here.
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.encode(raw, key.private, algorithm=key.algorithm, headers=headers)


def public_pem(key: SigningKey) -> bytes:
    assert not isinstance(key.public, bytes)
    return key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header_part, payload_part, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_part + "=" * (-len(header_part) % 4)))
    payload = json.loads(base64.urlsafe_b64decode(payload_part + "=" * (-len(payload_part) % 4)))
    return header, payload, signature


def make_key(algorithm: str) -> SigningKey:
    if algorithm == "HS512":
        return hmac_signing_key(HMAC_SECRET, now=NOW)
    return generate_signing_key(algorithm, now=NOW)  # type: ignore[arg-type]


def make_codec(key: SigningKey) -> JwtCodec:
    return JwtCodec(KeyRing([key]), issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY)


@pytest.fixture(params=ALGORITHMS)
def key(request: pytest.FixtureRequest) -> SigningKey:
    return make_key(request.param)


@pytest.fixture(params=ASYMMETRIC)
def asymmetric_key(request: pytest.FixtureRequest) -> SigningKey:
    return make_key(request.param)


def rejected(
    codec: JwtCodec,
    token: str,
    *,
    now: datetime = NOW,
    expected: type[TokenRejected] = TokenInvalid,
) -> TokenRejected:
    """Verify ``token`` and return the TokenRejected it raised (any other exception fails)."""
    with pytest.raises(TokenRejected) as caught:
        codec.verify(token, now=now)
    assert type(caught.value) is expected, caught.value.reason
    return caught.value


def test_baseline_token_is_accepted(key: SigningKey) -> None:
    """The untampered payload the attacks start from verifies (so rejections are meaningful)."""
    result = make_codec(key).verify(sign(key, claims()), now=NOW)

    assert (result.subject, result.user_id) == ("alice", 42)


# -- alg "none" and algorithm confusion -----------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected(key: SigningKey, alg: str) -> None:
    """An unsigned token (alg none, empty signature) is refused before any signature check."""
    token = forge({"alg": alg, "typ": "JWT", "kid": key.kid}, claims())

    error = rejected(make_codec(key), token)

    assert error.reason == "algorithm_not_allowed"


def test_alg_none_without_kid_is_rejected(key: SigningKey) -> None:
    """An unsigned token without kid is refused too (HS512 rings match kid-less tokens)."""
    error = rejected(make_codec(key), forge({"alg": "none", "typ": "JWT"}, claims()))

    assert error.reason in {"algorithm_not_allowed", "unknown_signing_key"}


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_the_public_key_pem_is_rejected(
    asymmetric_key: SigningKey, alg: str
) -> None:
    """Algorithm confusion: an HMAC token keyed with the public key's PEM is refused."""
    header = {"alg": alg, "typ": "JWT", "kid": asymmetric_key.kid}
    token = hmac_forge(header, claims(), public_pem(asymmetric_key))

    error = rejected(make_codec(asymmetric_key), token)

    assert error.reason == "algorithm_not_allowed"


def test_hmac_keyed_with_the_published_jwk_is_rejected(asymmetric_key: SigningKey) -> None:
    """Algorithm confusion with the JWKS document's JSON as HMAC secret is refused."""
    codec = make_codec(asymmetric_key)
    jwk = json.dumps(codec.keyring.jwks()["keys"][0]).encode()

    token = hmac_forge({"alg": "HS256", "kid": asymmetric_key.kid}, claims(), jwk)

    assert rejected(codec, token).reason == "algorithm_not_allowed"


def test_downgrade_of_a_shared_secret_token_to_hs256_is_rejected() -> None:
    """An HS256 token made with the real HS512 secret is refused: the key pins HS512."""
    key = make_key("HS512")

    token = hmac_forge({"alg": "HS256", "kid": key.kid}, claims(), HMAC_SECRET)

    assert rejected(make_codec(key), token).reason == "algorithm_not_allowed"


def test_token_of_another_asymmetric_algorithm_under_the_same_kid_is_rejected() -> None:
    """An EdDSA token claiming the kid of an ES256 key is refused (alg pinned per key)."""
    es256 = make_key("ES256")
    attacker = make_key("EdDSA")

    token = sign(attacker, claims(), kid=es256.kid)

    assert rejected(make_codec(es256), token).reason == "algorithm_not_allowed"


# -- time -----------------------------------------------------------------------------------


def test_expired_token_is_rejected_as_expired(key: SigningKey) -> None:
    """A validly signed token past exp + leeway raises TokenExpired."""
    exp = int((NOW - LEEWAY).timestamp()) - 1
    token = sign(key, claims(now=NOW - timedelta(hours=2), exp=exp))

    error = rejected(make_codec(key), token, expected=TokenExpired)

    assert error.code == "token_expired"


@pytest.mark.parametrize(
    "changes",
    [
        {"nbf": int((NOW + LEEWAY).timestamp()) + 1},
        {"iat": (NOW + LEEWAY).timestamp() + 1},
        {"iat": (NOW + timedelta(days=1)).timestamp(), "nbf": MISSING},
    ],
    ids=["nbf-future", "iat-future", "iat-future-no-nbf"],
)
def test_not_yet_valid_token_is_rejected(key: SigningKey, changes: dict[str, Any]) -> None:
    """A token whose nbf or iat lies beyond the leeway in the future is refused."""
    token = sign(key, claims(**changes))

    assert rejected(make_codec(key), token).reason == "token_not_yet_valid"


# -- issuer and audience --------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://evil.example"},
        {"iss": "AUTHGATE"},
        {"iss": ["authgate"]},
        {"aud": "someone-else"},
        {"aud": ["someone-else", "another"]},
        {"aud": ""},
    ],
    ids=["iss-other", "iss-case", "iss-list", "aud-other", "aud-list", "aud-empty"],
)
def test_wrong_issuer_or_audience_is_rejected(key: SigningKey, changes: dict[str, Any]) -> None:
    """A validly signed token for another issuer or audience is refused."""
    token = sign(key, claims(**changes))

    error = rejected(make_codec(key), token)

    assert error.reason in {"wrong_issuer_or_audience", "invalid_claims"}


# -- forged and tampered --------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        {"auth": "ROLE_ADMIN,ROLE_USER"},
        {"uid": 1},
        {"sub": "admin"},
        {"exp": 4_102_444_800},
    ],
    ids=["add-admin-role", "other-uid", "other-sub", "later-exp"],
)
def test_tampered_payload_is_rejected(key: SigningKey, tamper: dict[str, Any]) -> None:
    """Changing the payload of a genuine token while keeping its signature is refused."""
    header_part, _, signature = sign(key, claims()).split(".")

    forged = f"{header_part}.{b64url_json(claims(**tamper))}.{signature}"

    assert rejected(make_codec(key), forged).reason == "bad_signature"


def test_tampered_header_is_rejected(key: SigningKey) -> None:
    """Changing the header of a genuine token (still same alg and kid) breaks the signature."""
    _, payload_part, signature = sign(key, claims()).split(".")
    header = {"alg": key.algorithm, "kid": key.kid, "typ": "JWT", "x": 1}

    forged = f"{b64url_json(header)}.{payload_part}.{signature}"

    assert rejected(make_codec(key), forged).reason == "bad_signature"


def test_signature_of_another_token_is_rejected(key: SigningKey) -> None:
    """A genuine signature moved onto another payload is refused."""
    header_part, _, signature = sign(key, claims(sub="alice")).split(".")
    _, other_payload, _ = sign(key, claims(sub="admin", uid=1)).split(".")

    forged = f"{header_part}.{other_payload}.{signature}"

    assert rejected(make_codec(key), forged).reason == "bad_signature"


def test_unknown_kid_is_rejected(key: SigningKey) -> None:
    """A token naming a kid the ring does not have is refused."""
    token = sign(key, claims(), kid="no-such-key")

    assert rejected(make_codec(key), token).reason == "unknown_signing_key"


@pytest.mark.parametrize("kid", [123, ["kid"], {"$ne": ""}, True, "../../etc/passwd", ""], ids=repr)
def test_odd_kid_values_are_rejected(key: SigningKey, kid: Any) -> None:
    """A kid that is not one of the ring's kids, whatever its type, is refused."""
    token = forge({"alg": key.algorithm, "kid": kid}, claims(), b"signature")

    error = rejected(make_codec(key), token)

    assert error.reason in {"malformed_token", "unknown_signing_key", "algorithm_not_allowed"}


def test_missing_kid_is_rejected_by_an_asymmetric_ring(asymmetric_key: SigningKey) -> None:
    """A token without kid is refused by an ES256/EdDSA ring, even if signed by its key."""
    token = sign(asymmetric_key, claims(), kid=None)

    assert "kid" not in jwt.get_unverified_header(token)
    assert rejected(make_codec(asymmetric_key), token).reason == "unknown_signing_key"


def test_other_key_with_the_same_kid_is_rejected(key: SigningKey) -> None:
    """A token signed by an attacker's key that claims our kid fails the signature check."""
    attacker = (
        hmac_signing_key(OTHER_HMAC_SECRET, now=NOW)
        if key.algorithm == "HS512"
        else make_key(key.algorithm)
    )

    token = sign(attacker, claims(), kid=key.kid)

    assert rejected(make_codec(key), token).reason == "bad_signature"


def test_embedded_jwk_header_is_ignored(asymmetric_key: SigningKey) -> None:
    """A token carrying the attacker's own public key in a jwk header is still refused."""
    attacker = make_key(asymmetric_key.algorithm)
    attacker_jwk = make_codec(attacker).keyring.jwks()["keys"][0]

    token = jwt.encode(
        claims(),
        attacker.private,
        algorithm=attacker.algorithm,
        headers={"kid": asymmetric_key.kid, "jwk": attacker_jwk},
    )

    assert rejected(make_codec(asymmetric_key), token).reason == "bad_signature"


# -- claims ---------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_token_missing_a_required_claim_is_rejected(key: SigningKey, claim: str) -> None:
    """A validly signed token without one of the required claims is refused."""
    missing: dict[str, Any] = {claim: MISSING}
    token = sign(key, claims(**missing))

    assert rejected(make_codec(key), token).reason == "invalid_claims"


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_token_with_a_null_required_claim_is_rejected(key: SigningKey, claim: str) -> None:
    """A required claim present as JSON null counts as missing."""
    null: dict[str, Any] = {claim: None}
    token = sign(key, claims(**null))

    assert rejected(make_codec(key), token).reason == "invalid_claims"


WRONG_TYPES = [
    pytest.param({"exp": "4102444800"}, id="exp-string"),
    pytest.param({"exp": True}, id="exp-bool"),
    pytest.param({"exp": 1e20}, id="exp-1e20"),
    pytest.param({"exp": float("inf")}, id="exp-infinity"),
    pytest.param({"exp": float("nan")}, id="exp-nan"),
    pytest.param({"iat": "now"}, id="iat-string"),
    pytest.param({"iat": 10**400}, id="iat-huge-int"),
    pytest.param({"iat": float("nan")}, id="iat-nan"),
    pytest.param({"nbf": "0"}, id="nbf-string"),
    pytest.param({"uid": True}, id="uid-bool"),
    pytest.param({"uid": "42"}, id="uid-string"),
    pytest.param({"uid": 42.0}, id="uid-float"),
    pytest.param({"sub": ""}, id="sub-empty"),
    pytest.param({"sub": 42}, id="sub-int"),
    pytest.param({"jti": ""}, id="jti-empty"),
    pytest.param({"jti": 7}, id="jti-int"),
    pytest.param({"auth": ["ROLE_ADMIN"]}, id="auth-list"),
    pytest.param({"auth": 1}, id="auth-int"),
    pytest.param({"authenticated": False}, id="authenticated-false"),
    pytest.param({"authenticated": "true"}, id="authenticated-string"),
    pytest.param({"authenticated": 1}, id="authenticated-one"),
]


@pytest.mark.parametrize("changes", WRONG_TYPES)
def test_claim_of_the_wrong_type_is_rejected(key: SigningKey, changes: dict[str, Any]) -> None:
    """A validly signed token with a mistyped or absurd claim is refused as invalid."""
    token = sign(key, claims(**changes))

    error = rejected(make_codec(key), token)

    assert error.reason in {"invalid_claims", "token_not_yet_valid"}


@pytest.mark.parametrize("exp", [10**400, -(10**400)], ids=["huge", "huge-negative"])
def test_integer_exp_too_large_for_a_float_is_rejected(key: SigningKey, exp: int) -> None:
    """An exp integer beyond float range (valid JSON) is refused, not an OverflowError."""
    token = sign(key, claims(exp=exp))

    rejected(make_codec(key), token)


# -- malformed ------------------------------------------------------------------------------


def _truncations(token: str) -> list[str]:
    header_part, payload_part, _ = token.split(".")
    return [
        token[:-1],
        token[:-10],
        f"{header_part}.{payload_part}.",
        f"{header_part}.{payload_part}",
        f"{header_part}.",
        header_part,
        token[: len(token) // 2],
        token[:1],
    ]


def test_truncated_tokens_are_rejected(key: SigningKey) -> None:
    """Every truncation of a genuine token is refused as invalid."""
    codec = make_codec(key)
    token = sign(key, claims())

    for truncated in _truncations(token):
        error = rejected(codec, truncated)
        assert error.reason in {"malformed_token", "bad_signature", "invalid_claims"}, truncated


_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _respellings(token: str) -> list[str]:
    """Other spellings of the same bytes: padding, and a last character whose unused low
    bits differ (PyJWT decodes all of these to the genuine token's parts)."""
    spellings = []
    parts = token.split(".")
    for index, part in enumerate(parts):
        padded = part + "=" * (-len(part) % 4)
        unused = {2: 4, 3: 2}.get(len(part) % 4, 0)  # bits of the last character
        variants = [padded] if padded != part else []
        if unused:
            value = _BASE64URL.index(part[-1])
            variants.append(part[:-1] + _BASE64URL[value | (1 << unused) - 1])
        for variant in variants:
            spellings.append(".".join([*parts[:index], variant, *parts[index + 1 :]]))
    return spellings


def test_other_spellings_of_a_genuine_token_are_refused(key: SigningKey) -> None:
    """One token, one spelling: padded or bit-twiddled parts decode to the same bytes,
    and would each be verified afresh (no cache hit) and look like another token."""
    codec = make_codec(key)
    token = sign(key, claims())
    codec.verify(token, now=NOW)
    spellings = _respellings(token)
    assert spellings  # the signature of each algorithm leaves unused bits or padding
    for spelling in spellings:
        assert spelling != token
        assert base64.urlsafe_b64decode(spelling.split(".")[2] + "==") == (
            base64.urlsafe_b64decode(token.split(".")[2] + "==")
        )
        assert rejected(codec, spelling).reason == "malformed_token", spelling


GARBAGE = [
    "",
    " ",
    ".",
    "..",
    "...",
    "a.b.c",
    "a.b.c.d.e",
    "null",
    "{}",
    "Bearer eyJhbGciOiJFUzI1NiJ9",
    "eyJhbGciOiJFUzI1NiJ9",
    f"{b64url(b'[]')}.{b64url_json({})}.",
    f"{b64url(b'null')}.{b64url_json({})}.",
    f"{b64url(b'not json')}.{b64url_json({})}.",
    f"{b64url_json({'alg': 'ES256'})}.{b64url(b'[1,2]')}.c2ln",
    f"{b64url_json({'alg': 'ES256'})}.{b64url(b'not json')}.c2ln",
    "\x00\x00\x00",
    "é.é.é",
]


@pytest.mark.parametrize("token", GARBAGE, ids=repr)
def test_garbage_is_rejected(key: SigningKey, token: str) -> None:
    """Strings that are not JWTs are refused as invalid."""
    rejected(make_codec(key), token)


PROPERTY_KEY = make_key("ES256")
PROPERTY_CODEC = make_codec(PROPERTY_KEY)


@given(token=st.text())
@example(token="\ud800")  # a lone surrogate: a str that cannot be encoded as UTF-8
@example(token="a.\udcff.b")
@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_text_raises_only_token_rejected(token: str) -> None:
    """For any string, verify raises a TokenRejected subclass and nothing else."""
    with pytest.raises(TokenRejected):
        PROPERTY_CODEC.verify(token, now=NOW)


_claim_values = st.one_of(
    st.just(MISSING),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    changes=st.dictionaries(
        st.sampled_from([*REQUIRED_CLAIMS, "nbf", "authenticated"]), _claim_values, max_size=4
    )
)
@settings(deadline=None, max_examples=300)
def test_signed_token_with_arbitrary_claims_is_accepted_or_rejected(
    changes: dict[str, Any],
) -> None:
    """Whatever claim values a genuine key signs, verify returns claims or raises TokenRejected."""
    token = sign(PROPERTY_KEY, claims(**changes))

    try:
        result = PROPERTY_CODEC.verify(token, now=NOW)
    except TokenRejected:
        return
    assert isinstance(result.user_id, int)
    assert result.subject


def test_token_of_100_kb_is_rejected_before_parsing(key: SigningKey) -> None:
    """A 100 KB token, even validly signed, is refused as too long."""
    token = sign(key, claims(padding="x" * 100_000))

    assert len(token) > 100_000
    assert rejected(make_codec(key), token).reason == "token_too_long"


def test_100_kb_of_garbage_is_rejected_before_parsing(key: SigningKey) -> None:
    """100 KB of base64-looking characters is refused as too long."""
    assert rejected(make_codec(key), "A" * 100_000).reason == "token_too_long"


# -- the same attacks over HTTP -------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """What an attack may use: the app's real signing key, genuine tokens and the time."""

    key: SigningKey
    admin_token: str
    user_token: str
    now: datetime

    def payload(self, **changes: Any) -> dict[str, Any]:
        _, payload, _ = split(self.admin_token)
        payload.update(changes)
        return {name: value for name, value in payload.items() if value is not MISSING}


def _tampered_user_token(scene: Scene) -> str:
    header_part, _, signature = scene.user_token.split(".")
    _, payload, _ = split(scene.user_token)
    assert "ROLE_ADMIN" not in payload["auth"]
    payload["auth"] = "ROLE_ADMIN,ROLE_USER"
    return f"{header_part}.{b64url_json(payload)}.{signature}"


def _hs256_with_public_pem(scene: Scene) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": scene.key.kid}
    return hmac_forge(header, scene.payload(), public_pem(scene.key))


def _other_key_same_kid(scene: Scene) -> str:
    attacker = generate_signing_key(scene.key.algorithm, now=scene.now)  # type: ignore[arg-type]
    return sign(attacker, scene.payload(), kid=scene.key.kid)


def _unknown_key(scene: Scene) -> str:
    attacker = generate_signing_key(scene.key.algorithm, now=scene.now)  # type: ignore[arg-type]
    return sign(attacker, scene.payload())


def _expired(scene: Scene) -> str:
    past = scene.now - timedelta(hours=2)
    return sign(
        scene.key,
        scene.payload(
            iat=past.timestamp(),
            nbf=int(past.timestamp()),
            exp=int((scene.now - timedelta(minutes=5)).timestamp()),
        ),
    )


def _not_yet_valid(scene: Scene) -> str:
    future = scene.now + timedelta(hours=1)
    return sign(
        scene.key,
        scene.payload(
            iat=future.timestamp(),
            nbf=int(future.timestamp()),
            exp=int((future + timedelta(hours=1)).timestamp()),
        ),
    )


ATTACKS: dict[str, Callable[[Scene], str]] = {
    "alg-none": lambda s: forge({"alg": "none", "typ": "JWT", "kid": s.key.kid}, s.payload()),
    "alg-none-no-kid": lambda s: forge({"alg": "none", "typ": "JWT"}, s.payload()),
    "hs256-with-public-pem": _hs256_with_public_pem,
    "expired": _expired,
    "not-yet-valid": _not_yet_valid,
    "wrong-iss": lambda s: sign(s.key, s.payload(iss="https://evil.example")),
    "wrong-aud": lambda s: sign(s.key, s.payload(aud="another-service")),
    "tampered-auth": _tampered_user_token,
    "unknown-kid": lambda s: sign(s.key, s.payload(), kid="no-such-key"),
    "unknown-key": _unknown_key,
    "missing-kid": lambda s: sign(s.key, s.payload(), kid=None),
    "other-key-same-kid": _other_key_same_kid,
    "missing-sub": lambda s: sign(s.key, s.payload(sub=MISSING)),
    "missing-uid": lambda s: sign(s.key, s.payload(uid=MISSING)),
    "missing-exp": lambda s: sign(s.key, s.payload(exp=MISSING)),
    "missing-jti": lambda s: sign(s.key, s.payload(jti=MISSING)),
    "exp-string": lambda s: sign(s.key, s.payload(exp="4102444800")),
    "exp-1e20": lambda s: sign(s.key, s.payload(exp=1e20)),
    "uid-bool": lambda s: sign(s.key, s.payload(uid=True)),
    "sub-empty": lambda s: sign(s.key, s.payload(sub="")),
    "authenticated-false": lambda s: sign(s.key, s.payload(authenticated=False)),
    "truncated": lambda s: s.admin_token[:-10],
    "signature-stripped": lambda s: s.admin_token.rsplit(".", 1)[0] + ".",
    "garbage": lambda s: "not-a-jwt",
    "three-garbage-parts": lambda s: "a.b.c",
    "100-kb": lambda s: sign(s.key, s.payload(padding="x" * 100_000)),
}


@pytest.fixture
def scene(harness: Harness, admin_token: str, user_token: str) -> Scene:
    return Scene(
        key=harness.services.tokens.codec.keyring.active,
        admin_token=admin_token,
        user_token=user_token,
        now=harness.clock.now,
    )


async def _assert_refused_with_401(harness: Harness, token: str) -> None:
    response = await harness.client.get("/api/account", headers=bearer(token))

    assert response.status_code == 401, response.text
    body = response.json()
    assert body["code"] in ("invalid_token", "token_expired")
    # The generic message only: the precise reason is for the audit log.
    assert (
        body["message"]
        == {"invalid_token": "Invalid token", "token_expired": "Token expired"}[body["code"]]
    )
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="authgate"')


async def test_genuine_token_opens_the_account(harness: Harness, scene: Scene) -> None:
    """Control: the genuine admin token gets 200 from GET /api/account."""
    response = await harness.client.get("/api/account", headers=bearer(scene.admin_token))

    assert response.status_code == 200
    assert response.json()["login"] == "admin"


async def test_token_signed_by_hand_with_the_app_key_is_accepted(
    harness: Harness, scene: Scene
) -> None:
    """Control: re-signing the admin payload with the app's key by hand gives 200, so the
    attacks below are refused for what they change, not for how they were made."""
    token = sign(scene.key, scene.payload(jti="hand-made"))

    response = await harness.client.get("/api/account", headers=bearer(token))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_token_gets_401_over_http(harness: Harness, scene: Scene, attack: str) -> None:
    """Each attack token sent to GET /api/account gets 401 invalid_token/token_expired."""
    token = ATTACKS[attack](scene)

    await _assert_refused_with_401(harness, token)


async def test_expired_token_reports_token_expired_over_http(
    harness: Harness, scene: Scene
) -> None:
    """A genuinely signed but expired token is told token_expired (it proved the secret)."""
    response = await harness.client.get("/api/account", headers=bearer(_expired(scene)))

    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"


async def test_forged_token_reports_only_invalid_token_over_http(
    harness: Harness, scene: Scene
) -> None:
    """A forged token is told only invalid_token, with nothing about why."""
    response = await harness.client.get("/api/account", headers=bearer(_other_key_same_kid(scene)))

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert "signature" not in response.text
    assert "signature" not in response.headers["WWW-Authenticate"]


async def test_token_expires_over_http_when_the_clock_passes_exp_and_leeway(
    harness: Harness, scene: Scene
) -> None:
    """A used (cached) admin token keeps working within the leeway, then gets token_expired."""
    exp = split(scene.admin_token)[1]["exp"]
    leeway = timedelta(seconds=harness.services.settings.tokens.leeway_seconds)
    assert (await harness.client.get("/api/account", headers=bearer(scene.admin_token))).is_success

    harness.clock.now = datetime.fromtimestamp(exp, UTC) + leeway
    within = await harness.client.get("/api/account", headers=bearer(scene.admin_token))
    harness.clock.now = datetime.fromtimestamp(exp, UTC) + leeway + timedelta(seconds=1)
    after = await harness.client.get("/api/account", headers=bearer(scene.admin_token))

    assert within.status_code == 200
    assert after.status_code == 401
    assert after.json()["code"] == "token_expired"


async def test_huge_integer_exp_gets_401_not_500_over_http(harness: Harness, scene: Scene) -> None:
    """A token with an exp beyond float range is refused with 401, not a 500."""
    token = sign(scene.key, scene.payload(exp=10**400))

    await _assert_refused_with_401(harness, token)
