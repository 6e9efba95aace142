"""Issuing and verifying access tokens (``JwtCodec``) and the signing-key ring."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authgate.exceptions import ConfigurationError, TokenExpired, TokenInvalid
from authgate.security.signing_keys import (
    KeyRing,
    SigningKey,
    generate_signing_key,
    hmac_signing_key,
    keyring_from_document,
    keyring_to_document,
    public_jwk,
)
from authgate.security.tokens import JwtCodec

ISSUER = "https://authgate.example"
AUDIENCE = "authgate-api"
LEEWAY = timedelta(seconds=30)
TTL = timedelta(hours=1)
ROLES = frozenset({"ROLE_USER", "ROLE_ADMIN"})
HMAC_SECRET = bytes(range(64))

# A fixed instant with sub-millisecond digits, so the rounding of ``iat`` is visible.
NOW = datetime.now(UTC).replace(microsecond=123_456)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_key(algorithm: str, *, now: datetime = NOW) -> SigningKey:
    if algorithm == "HS512":
        return hmac_signing_key(HMAC_SECRET, now=now)
    return generate_signing_key(algorithm, now=now)  # type: ignore[arg-type]


def make_codec(ring: KeyRing) -> JwtCodec:
    return JwtCodec(ring, issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY)


def issue(codec: JwtCodec, *, now: datetime = NOW, ttl: timedelta = TTL) -> str:
    return codec.issue(subject="alice", user_id=42, authorities=ROLES, now=now, ttl=ttl).token


def raw_payload(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def rfc7638_thumbprint(key: SigningKey) -> str:
    """The thumbprint computed independently of authgate, from the key's raw numbers."""
    public = key.public
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        members = {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }
    else:
        assert not isinstance(public, bytes)
        members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(public.public_bytes_raw())}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


ALGORITHMS = ["ES256", "EdDSA", "HS512"]


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def codec(algorithm: str) -> JwtCodec:
    return make_codec(KeyRing([make_key(algorithm)]))


# -- issue / verify -------------------------------------------------------------------------


def test_issued_token_verifies_to_the_same_claims(codec: JwtCodec) -> None:
    """A token issued by the codec verifies, and its claims are the ones issued."""
    issued = codec.issue(subject="alice", user_id=42, authorities=ROLES, now=NOW, ttl=TTL)

    claims = codec.verify(issued.token, now=NOW)

    assert claims == issued.claims
    assert claims.subject == "alice"
    assert claims.user_id == 42
    assert claims.authorities == ROLES
    assert claims.expires_at == datetime.fromtimestamp(int((NOW + TTL).timestamp()), UTC)


def test_header_names_the_algorithm_and_the_key(codec: JwtCodec, algorithm: str) -> None:
    """The JOSE header carries the key's algorithm and kid."""
    header = jwt.get_unverified_header(issue(codec))

    assert header["alg"] == algorithm
    assert header["kid"] == codec.keyring.active.kid


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_kid_is_the_rfc7638_thumbprint_of_the_public_key(algorithm: str) -> None:
    """For asymmetric keys the kid (and the token's kid header) is the RFC 7638 thumbprint."""
    key = make_key(algorithm)
    token = issue(make_codec(KeyRing([key])))

    assert key.kid == rfc7638_thumbprint(key)
    assert jwt.get_unverified_header(token)["kid"] == rfc7638_thumbprint(key)


def test_kid_matches_the_rfc8037_known_answer() -> None:
    """The Ed25519 key of RFC 8037 appendix A gets the thumbprint the RFC gives for it."""
    private = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    document = {
        "version": 1,
        "keys": [
            {
                "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                "alg": "EdDSA",
                "created_at": NOW.isoformat(),
                "retired_at": None,
                "private_key_pem": pem,
            }
        ],
    }

    ring = keyring_from_document(document)

    assert ring.active.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_payload_carries_every_claim(codec: JwtCodec) -> None:
    """The raw payload has UTMStack's claims plus uid, iss, aud, iat, nbf, exp, jti,
    amr (RFC 8176: ``pwd``, plus ``otp`` after a second factor), and v12's roles and
    permissions (what the roles grant)."""
    issued = codec.issue(
        subject="alice",
        user_id=42,
        authorities=frozenset({"ROLE_USER", "ROLE_ADMIN"}),
        now=NOW,
        ttl=TTL,
    )

    payload = raw_payload(issued.token)

    assert set(payload) == {
        "sub",
        "auth",
        "authenticated",
        "uid",
        "iss",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
        "amr",
        "roles",
        "permissions",
    }
    assert payload["roles"] == ["ROLE_ADMIN", "ROLE_USER"]
    assert "users.write" in payload["permissions"]
    assert payload["permissions"] == sorted(payload["permissions"])
    assert payload["amr"] == ["pwd"]
    assert payload["sub"] == "alice"
    assert payload["auth"] == "ROLE_ADMIN,ROLE_USER"
    assert payload["authenticated"] is True
    assert payload["uid"] == 42
    assert payload["iss"] == ISSUER
    assert payload["aud"] == AUDIENCE
    assert payload["jti"] == issued.claims.token_id
    assert payload["exp"] == int((NOW + TTL).timestamp())
    assert payload["nbf"] == int(NOW.timestamp())


def test_iat_is_a_float_with_milliseconds(codec: JwtCodec) -> None:
    """iat keeps milliseconds (for "log out everywhere" in the same second) and is a float."""
    payload = raw_payload(issue(codec))

    assert isinstance(payload["iat"], float)
    assert payload["iat"] == math.floor(NOW.timestamp() * 1000) / 1000
    assert payload["iat"] != int(NOW.timestamp())  # NOW has .123456 seconds
    assert isinstance(payload["exp"], int)
    assert isinstance(payload["nbf"], int)


@pytest.mark.parametrize("microsecond", [999_600, 999_999, 500, 0])
def test_iat_never_claims_a_later_instant_than_issue(codec: JwtCodec, microsecond: int) -> None:
    """iat is floored to the millisecond: never after the real issuing instant (revocation)."""
    now = NOW.replace(microsecond=microsecond)

    payload = raw_payload(issue(codec, now=now))

    assert payload["iat"] <= now.timestamp()
    assert now.timestamp() - payload["iat"] < 0.001
    assert payload["nbf"] == int(now.timestamp())


def test_issued_at_claim_has_millisecond_precision(codec: JwtCodec) -> None:
    """The verified issued_at is the issuing instant to the millisecond."""
    claims = codec.verify(issue(codec), now=NOW)

    assert abs(claims.issued_at - NOW) < timedelta(milliseconds=1)
    assert claims.issued_at.microsecond == 123_000


def test_each_token_gets_a_fresh_jti(codec: JwtCodec) -> None:
    """Two tokens issued at the same instant have different jti."""
    first = raw_payload(issue(codec))["jti"]
    second = raw_payload(issue(codec))["jti"]

    assert first != second
    assert len(first) >= 16


def test_empty_authorities_give_an_empty_auth_claim(codec: JwtCodec) -> None:
    """A user without roles gets auth "" and verifies with no authorities."""
    token = codec.issue(subject="bob", user_id=7, authorities=frozenset(), now=NOW, ttl=TTL).token

    assert raw_payload(token)["auth"] == ""
    assert codec.verify(token, now=NOW).authorities == frozenset()


def test_hs512_needs_a_secret_of_at_least_64_bytes() -> None:
    """hmac_signing_key refuses a 63-byte secret with ConfigurationError and accepts 64."""
    with pytest.raises(ConfigurationError):
        hmac_signing_key(HMAC_SECRET[:63], now=NOW)

    assert hmac_signing_key(HMAC_SECRET, now=NOW).algorithm == "HS512"


def test_hs512_token_without_kid_verifies() -> None:
    """A JHipster-style HS512 token (no kid header) verifies against an HS512 ring."""
    codec = make_codec(KeyRing([make_key("HS512")]))
    payload = raw_payload(issue(codec))

    token = jwt.encode(payload, HMAC_SECRET, algorithm="HS512")

    assert "kid" not in jwt.get_unverified_header(token)
    assert codec.verify(token, now=NOW).subject == "alice"


def test_hs512_kid_depends_on_the_secret() -> None:
    """Different HS512 secrets get different kids; the same secret the same kid."""
    other = bytes(reversed(HMAC_SECRET))

    assert hmac_signing_key(HMAC_SECRET, now=NOW).kid == hmac_signing_key(HMAC_SECRET, now=NOW).kid
    assert hmac_signing_key(HMAC_SECRET, now=NOW).kid != hmac_signing_key(other, now=NOW).kid


# -- time -----------------------------------------------------------------------------------


def test_token_is_valid_until_exp_plus_leeway(codec: JwtCodec) -> None:
    """A token still verifies at exactly exp + leeway."""
    token = issue(codec)
    exp = raw_payload(token)["exp"]

    claims = codec.verify(token, now=datetime.fromtimestamp(exp, UTC) + LEEWAY)

    assert claims.subject == "alice"


def test_token_expires_just_after_exp_plus_leeway(codec: JwtCodec) -> None:
    """A millisecond past exp + leeway the token raises TokenExpired."""
    token = issue(codec)
    exp = raw_payload(token)["exp"]
    late = datetime.fromtimestamp(exp, UTC) + LEEWAY + timedelta(milliseconds=1)

    with pytest.raises(TokenExpired) as caught:
        codec.verify(token, now=late)

    assert caught.value.code == "token_expired"


def test_token_expires_after_its_ttl(codec: JwtCodec) -> None:
    """A 60-second token is refused as expired two minutes after issue."""
    token = issue(codec, ttl=timedelta(seconds=60))

    assert codec.verify(token, now=NOW + timedelta(seconds=60)).subject == "alice"
    with pytest.raises(TokenExpired):
        codec.verify(token, now=NOW + timedelta(minutes=2))


def test_token_is_accepted_slightly_before_issue_within_leeway(codec: JwtCodec) -> None:
    """A verifier whose clock is behind by less than the leeway accepts a fresh token."""
    token = issue(codec)

    claims = codec.verify(token, now=NOW - LEEWAY + timedelta(seconds=1))

    assert claims.user_id == 42


def test_token_is_not_yet_valid_before_issue_beyond_leeway(codec: JwtCodec) -> None:
    """A verifier whose clock is behind by more than the leeway refuses the token."""
    token = issue(codec)

    with pytest.raises(TokenInvalid) as caught:
        codec.verify(token, now=NOW - LEEWAY - timedelta(seconds=1))

    assert caught.value.reason == "token_not_yet_valid"


# -- rotation -------------------------------------------------------------------------------

KEEP_FOR = timedelta(days=7)


@pytest.mark.parametrize(
    ("old_algorithm", "new_algorithm"), [("ES256", "EdDSA"), ("EdDSA", "ES256"), ("ES256", "ES256")]
)
def test_tokens_signed_before_a_rotation_still_verify(
    old_algorithm: str, new_algorithm: str
) -> None:
    """After rotation the old key verifies its tokens and the new key signs new ones."""
    old_key = make_key(old_algorithm)
    before = make_codec(KeyRing([old_key]))
    old_token = issue(before)
    later = NOW + timedelta(minutes=10)
    new_key = make_key(new_algorithm, now=later)

    after = before.with_keyring(before.keyring.rotated(new_key, now=later, keep_for=KEEP_FOR))
    new_token = issue(after, now=later)

    assert after.verify(old_token, now=later).subject == "alice"
    assert jwt.get_unverified_header(old_token)["kid"] == old_key.kid
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert new_key.kid != old_key.kid
    assert after.verify(new_token, now=later).subject == "alice"


def test_rotation_retires_the_old_key_at_the_rotation_time() -> None:
    """The old key stays in the ring with retired_at = now; the new key is active."""
    old_key = make_key("ES256")
    later = NOW + timedelta(hours=1)
    new_key = make_key("ES256", now=later)

    ring = KeyRing([old_key]).rotated(new_key, now=later, keep_for=KEEP_FOR)

    assert ring.active == new_key
    assert [key.kid for key in ring.keys] == [new_key.kid, old_key.kid]
    assert ring.keys[1].retired_at == later


def test_rotation_keeps_a_key_retired_exactly_keep_for_ago() -> None:
    """A key retired exactly keep_for before the next rotation is still kept."""
    first, second, third = (make_key("ES256") for _ in range(3))
    ring = KeyRing([first]).rotated(second, now=NOW, keep_for=KEEP_FOR)

    ring = ring.rotated(third, now=NOW + KEEP_FOR, keep_for=KEEP_FOR)

    assert [key.kid for key in ring.keys] == [third.kid, second.kid, first.kid]


def test_rotation_drops_keys_retired_longer_than_keep_for() -> None:
    """Keys retired more than keep_for ago are dropped, and their tokens stop verifying."""
    first, second, third = (make_key("ES256") for _ in range(3))
    codec = make_codec(KeyRing([first]))
    old_token = issue(codec)
    ring = codec.keyring.rotated(second, now=NOW, keep_for=KEEP_FOR)
    much_later = NOW + KEEP_FOR + timedelta(seconds=1)

    ring = ring.rotated(third, now=much_later, keep_for=KEEP_FOR)

    assert [key.kid for key in ring.keys] == [third.kid, second.kid]
    assert ring.find(first.kid) is None
    with pytest.raises(TokenInvalid) as caught:
        codec.with_keyring(ring).verify(old_token, now=NOW)
    assert caught.value.reason == "unknown_signing_key"


def test_a_staged_key_verifies_but_does_not_sign_until_the_next_rotation() -> None:
    """Several nodes, each with a copy of the key file: the staged key reaches every node
    before any signs with it, so the node that activates it first signs nothing the
    others cannot verify; the rotation retires the old key as any other."""
    old_key = make_key("ES256")
    staged_ring = KeyRing([old_key]).with_staged(make_key("EdDSA"))
    staged = staged_ring.staged_key
    assert staged is not None
    assert staged_ring.active == old_key  # still signs
    assert {jwk["kid"] for jwk in staged_ring.jwks()["keys"]} == {old_key.kid, staged.kid}
    waiting = make_codec(staged_ring)  # a node that has the file, not activated yet
    assert jwt.get_unverified_header(issue(waiting))["kid"] == old_key.kid

    later = NOW + timedelta(minutes=10)
    activated = staged_ring.rotated(replace(staged, staged=False), now=later, keep_for=KEEP_FOR)
    first = waiting.with_keyring(activated)  # the node that activated it
    token = issue(first, now=later)

    assert jwt.get_unverified_header(token)["kid"] == staged.kid
    assert waiting.verify(token, now=later).subject == "alice"
    assert activated.staged_key is None
    assert [(key.kid, key.retired_at) for key in activated.keys] == [
        (staged.kid, None),
        (old_key.kid, later),
    ]
    # Written and read back, the staged state survives (and only it is staged).
    read_back = keyring_from_document(keyring_to_document(staged_ring))
    assert [(key.kid, key.staged) for key in read_back.keys] == [
        (staged.kid, True),
        (old_key.kid, False),
    ]
    # A second staging replaces the first (it never signed); a rotation drops it.
    again = staged_ring.with_staged(make_key("ES256"))
    assert [key.kid for key in again.keys if key.staged] != [staged.kid]
    assert len(again.keys) == 2
    fresh = make_key("ES256", now=later)
    assert staged_ring.rotated(fresh, now=later, keep_for=KEEP_FOR).find(staged.kid) is None


def test_a_key_file_with_a_retired_staged_key_or_no_active_key_is_refused() -> None:
    key = make_key("ES256")
    document = keyring_to_document(KeyRing([key]))
    document["keys"][0]["staged"] = True
    with pytest.raises(ConfigurationError, match="exactly one active"):
        keyring_from_document(document)
    document["keys"][0]["staged"] = "yes"
    with pytest.raises(ConfigurationError, match="staged must be true or false"):
        keyring_from_document(document)


def test_with_keyring_keeps_issuer_audience_and_leeway() -> None:
    """A codec from with_keyring issues the same iss/aud and applies the same leeway."""
    codec = make_codec(KeyRing([make_key("ES256")]))
    rotated = codec.with_keyring(
        codec.keyring.rotated(make_key("EdDSA"), now=NOW, keep_for=KEEP_FOR)
    )
    token = issue(rotated)
    exp = raw_payload(token)["exp"]

    assert raw_payload(token)["iss"] == ISSUER
    assert raw_payload(token)["aud"] == AUDIENCE
    assert rotated.verify(token, now=datetime.fromtimestamp(exp, UTC) + LEEWAY).user_id == 42


def test_key_ring_needs_exactly_one_active_key() -> None:
    """A ring with no active key, or with two, raises ConfigurationError."""
    first, second = make_key("ES256"), make_key("ES256")
    retired = SigningKey(
        kid=first.kid,
        algorithm=first.algorithm,
        private=first.private,
        public=first.public,
        created_at=NOW,
        retired_at=NOW,
    )

    with pytest.raises(ConfigurationError):
        KeyRing([retired])
    with pytest.raises(ConfigurationError):
        KeyRing([first, second])


def test_key_ring_refuses_duplicate_kids() -> None:
    """Rotating to a key whose kid is already in the ring raises ConfigurationError."""
    key = make_key("ES256")

    with pytest.raises(ConfigurationError):
        KeyRing([key]).rotated(key, now=NOW, keep_for=KEEP_FOR)


# -- JWKS -----------------------------------------------------------------------------------


def test_jwks_lists_every_asymmetric_key_without_private_members() -> None:
    """jwks() exposes each ring key's public JWK (kid, alg, use) and never "d"."""
    old_key = make_key("ES256")
    new_key = make_key("EdDSA")
    ring = KeyRing([old_key]).rotated(new_key, now=NOW, keep_for=KEEP_FOR)

    jwks = ring.jwks()

    assert [jwk["kid"] for jwk in jwks["keys"]] == [new_key.kid, old_key.kid]
    assert [jwk["alg"] for jwk in jwks["keys"]] == ["EdDSA", "ES256"]
    for jwk in jwks["keys"]:
        assert "d" not in jwk
        assert jwk["use"] == "sig"
    assert jwks["keys"][0]["kty"] == "OKP"
    assert jwks["keys"][1]["kty"] == "EC"


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_jwks_key_verifies_tokens_of_its_kid(algorithm: str) -> None:
    """The published JWK is the real public key: a third party can verify a token with it."""
    codec = make_codec(KeyRing([make_key(algorithm)]))
    token = issue(codec)
    (jwk,) = codec.keyring.jwks()["keys"]

    payload = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[algorithm],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )

    assert payload["sub"] == "alice"
    assert jwk["kid"] == jwt.get_unverified_header(token)["kid"]


def test_jwks_is_empty_for_a_shared_secret_ring() -> None:
    """An HS512 ring publishes no keys at all."""
    assert KeyRing([make_key("HS512")]).jwks() == {"keys": []}


def test_public_jwk_refuses_a_symmetric_key() -> None:
    """public_jwk raises ValueError for an HS512 key instead of leaking the secret."""
    with pytest.raises(ValueError, match="symmetric"):
        public_jwk(make_key("HS512"))


# -- key documents --------------------------------------------------------------------------


def test_keyring_document_round_trip_keeps_every_key() -> None:
    """A ring written to a document and read back has the same keys, times and order."""
    old_key = make_key("ES256")
    new_key = make_key("EdDSA", now=NOW + timedelta(hours=1))
    ring = KeyRing([old_key]).rotated(new_key, now=NOW + timedelta(hours=1), keep_for=KEEP_FOR)

    loaded = keyring_from_document(json.loads(json.dumps(keyring_to_document(ring))))

    assert [(k.kid, k.algorithm, k.created_at, k.retired_at) for k in loaded.keys] == [
        (k.kid, k.algorithm, k.created_at, k.retired_at) for k in ring.keys
    ]
    assert loaded.active.kid == new_key.kid


def test_keyring_document_round_trip_keeps_the_private_keys() -> None:
    """Tokens signed with the original ring verify with the reloaded one, and vice versa."""
    original = make_codec(KeyRing([make_key("ES256")]))
    reloaded = make_codec(keyring_from_document(keyring_to_document(original.keyring)))

    assert reloaded.verify(issue(original), now=NOW).subject == "alice"
    assert original.verify(issue(reloaded), now=NOW).subject == "alice"


def test_keyring_document_holds_pkcs8_pem_private_keys() -> None:
    """The document stores each private key as unencrypted PKCS#8 PEM, with version 1."""
    document = keyring_to_document(KeyRing([make_key("EdDSA")]))

    assert document["version"] == 1
    (entry,) = document["keys"]
    assert entry["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert entry["retired_at"] is None


def test_shared_secret_ring_is_never_written_to_a_document() -> None:
    """keyring_to_document refuses an HS512 ring with ValueError."""
    with pytest.raises(ValueError, match="shared-secret"):
        keyring_to_document(KeyRing([make_key("HS512")]))


def _valid_entry(algorithm: str = "ES256") -> dict[str, Any]:
    document = keyring_to_document(KeyRing([make_key(algorithm)]))
    entry: dict[str, Any] = document["keys"][0]
    return entry


def _other_pem(algorithm: str) -> str:
    return str(_valid_entry(algorithm)["private_key_pem"])


def _malformed_documents() -> list[Any]:
    entry = _valid_entry()
    return [
        pytest.param({}, id="empty"),
        pytest.param({"version": 2, "keys": [entry]}, id="version-2"),
        pytest.param({"keys": [entry]}, id="no-version"),
        pytest.param({"version": "1", "keys": [entry]}, id="version-as-string"),
        pytest.param({"version": 1}, id="no-keys"),
        pytest.param({"version": 1, "keys": None}, id="keys-null"),
        pytest.param({"version": 1, "keys": "abc"}, id="keys-string"),
        pytest.param({"version": 1, "keys": []}, id="keys-empty"),
        pytest.param({"version": 1, "keys": [None]}, id="entry-null"),
        pytest.param({"version": 1, "keys": [[1, 2]]}, id="entry-list"),
        pytest.param({"version": 1, "keys": [{**entry, "alg": "HS512"}]}, id="alg-hs512"),
        pytest.param({"version": 1, "keys": [{**entry, "alg": "RS256"}]}, id="alg-rs256"),
        pytest.param({"version": 1, "keys": [{**entry, "alg": "EdDSA"}]}, id="alg-mismatch"),
        pytest.param(
            {"version": 1, "keys": [{**entry, "private_key_pem": _other_pem("EdDSA")}]},
            id="pem-of-other-algorithm",
        ),
        pytest.param({"version": 1, "keys": [{**entry, "kid": "not-its-kid"}]}, id="wrong-kid"),
        pytest.param(
            {"version": 1, "keys": [{**entry, "private_key_pem": "-----BEGIN PRIVATE KEY-----"}]},
            id="pem-garbage",
        ),
        pytest.param({"version": 1, "keys": [{**entry, "private_key_pem": 123}]}, id="pem-int"),
        pytest.param({"version": 1, "keys": [{**entry, "created_at": "yesterday"}]}, id="bad-date"),
        pytest.param({"version": 1, "keys": [{**entry, "created_at": 5}]}, id="date-int"),
        pytest.param(
            {"version": 1, "keys": [{**entry, "retired_at": "soon"}]}, id="bad-retired-date"
        ),
        pytest.param(
            {"version": 1, "keys": [{k: v for k, v in entry.items() if k != "kid"}]}, id="no-kid"
        ),
        pytest.param({"version": 1, "keys": [entry, _valid_entry("EdDSA")]}, id="two-active-keys"),
        pytest.param({"version": 1, "keys": [entry, entry]}, id="duplicate-key"),
    ]


@pytest.mark.parametrize("document", _malformed_documents())
def test_malformed_key_document_raises_configuration_error(document: Any) -> None:
    """Every malformed key document raises ConfigurationError, never another exception."""
    with pytest.raises(ConfigurationError):
        keyring_from_document(document)


# -- no key material in repr ----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signing_key_repr_shows_no_key_material(algorithm: str) -> None:
    """repr/str of a key (and of a tuple of keys) shows kid and algorithm, never key bytes."""
    key = make_key(algorithm)
    if isinstance(key.private, bytes):
        secrets = [key.private.hex(), repr(key.private), _b64url(key.private)]
    else:
        pem = key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        body = "".join(pem.splitlines()[1:-1])
        secrets = [body[:40], body[-40:], "PRIVATE KEY", "private="]

    for text in (repr(key), str(key), repr((key,)), f"{key}"):
        assert key.kid in text
        assert algorithm in text
        for secret in secrets:
            assert secret not in text


def test_second_factor_is_carried_in_amr(codec: JwtCodec) -> None:
    issued = codec.issue(
        subject="alice",
        user_id=42,
        authorities=frozenset({"ROLE_USER"}),
        now=NOW,
        ttl=TTL,
        second_factor=True,
    )
    assert raw_payload(issued.token)["amr"] == ["pwd", "otp"]
    assert codec.verify(issued.token, now=NOW).second_factor is True


def test_pre_verification_tokens_are_only_accepted_as_such(codec: JwtCodec) -> None:
    """UTMStack's pre-verification token (ROLE_PRE_VERIFICATION_USER, authenticated
    false), for its own audience: verify() refuses it, and verify_pre_verification()
    refuses an access token."""
    pending = codec.issue_pre_verification(
        subject="alice", user_id=42, now=NOW, ttl=timedelta(minutes=5), remember_me=True
    )
    payload = raw_payload(pending.token)
    assert payload["auth"] == "ROLE_PRE_VERIFICATION_USER"
    assert payload["authenticated"] is False
    assert payload["aud"] != AUDIENCE
    claims = codec.verify_pre_verification(pending.token, now=NOW)
    assert claims.remember_me is True
    assert claims.user_id == 42
    with pytest.raises(TokenInvalid):
        codec.verify(pending.token, now=NOW)
    with pytest.raises(TokenInvalid):
        codec.verify_pre_verification(issue(codec), now=NOW)
    with pytest.raises(TokenExpired):
        codec.verify_pre_verification(pending.token, now=NOW + timedelta(minutes=6))


def test_each_refusal_before_the_claims_has_its_own_reason() -> None:
    """The header, the key, the algorithm, the signature, the issuer and audience and
    the required claims are each refused with their own reason (for the audit trail)."""
    ring = KeyRing([make_key("ES256")])
    codec = make_codec(ring)
    key = ring.active
    token = issue(codec)
    header, payload, signature = token.split(".")
    claims = raw_payload(token)

    def signed(changes: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        edited = {name: value for name, value in {**claims, **changes}.items() if value is not None}
        return jwt.encode(edited, key.private, "ES256", {"kid": key.kid, **(headers or {})})

    other_alg = _b64url(json.dumps({"alg": "EdDSA", "kid": key.kid}).encode())
    refused = {
        f"{_b64url(b'not json')}.{payload}.{signature}": "malformed_token",
        signed({}, headers={"kid": "nobody"}): "unknown_signing_key",
        f"{other_alg}.{payload}.{signature}": "algorithm_not_allowed",
        f"{header}.{payload}.{signature[:-4]}AAAA": "bad_signature",
        signed({"iss": "https://elsewhere.example"}): "wrong_issuer_or_audience",
        signed({"aud": "another-api"}): "wrong_issuer_or_audience",
        signed({"jti": None}): "invalid_claims",
    }
    for candidate, reason in refused.items():
        with pytest.raises(TokenInvalid) as caught:
            codec.verify(candidate, now=NOW)
        assert caught.value.reason == reason, candidate
