"""JWT signing keys and the key ring that holds them for rotation.

The ring's one active key (neither retired nor staged) signs; every key in the ring
verifies, so tokens signed before a rotation stay valid until they expire. A staged key
verifies (and is published) but does not sign yet: several nodes with a copy of the file
each learn it first, then the rotation that activates it changes nothing they cannot
verify. Pure: reading and writing key files lives in ``storage/keystore.py``.

:func:`verify_jws` is the one check of a JWS against the ring, shared by access tokens
(``tokens.py``) and audit checkpoints (``audit_checkpoints.py``).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from authgate.exceptions import ConfigurationError

AsymmetricAlgorithm = Literal["ES256", "EdDSA"]
Algorithm = Literal["ES256", "EdDSA", "HS512"]
PrivateKey = ec.EllipticCurvePrivateKey | Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | Ed25519PublicKey

MIN_HMAC_SECRET_BYTES = 64  # HS512 needs a secret at least as long as its 512-bit output


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key: ``private`` signs, ``public`` verifies (both the secret for HS512)."""

    kid: str
    algorithm: Algorithm
    private: PrivateKey | bytes
    public: PublicKey | bytes
    created_at: datetime
    retired_at: datetime | None = None
    staged: bool = False  # verifies, does not sign yet

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"

    @property
    def is_symmetric(self) -> bool:
        return self.algorithm == "HS512"


def generate_signing_key(algorithm: AsymmetricAlgorithm, *, now: datetime) -> SigningKey:
    """A fresh asymmetric key; ``kid`` is its RFC 7638 thumbprint."""
    private: PrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = Ed25519PrivateKey.generate()
    return _asymmetric_key(private, algorithm, created_at=now, retired_at=None)


def hmac_signing_key(secret: bytes, *, now: datetime) -> SigningKey:
    """The HS512 key for JHipster-compatible deployments (shared secret)."""
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise ConfigurationError(
            f"the HS512 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes after base64 decoding"
        )
    kid = _b64url(hashlib.sha256(b"authgate-kid:" + secret).digest())[:16]
    return SigningKey(kid=kid, algorithm="HS512", private=secret, public=secret, created_at=now)


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The public half of ``key`` as a JWK; symmetric keys have none."""
    if isinstance(key.public, bytes):
        raise ValueError("a symmetric key has no public JWK")
    if isinstance(key.public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(key.public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(key.public, as_dict=True)
    return {**jwk, "kid": key.kid, "alg": key.algorithm, "use": "sig"}


class KeyRing:
    """An ordered set of signing keys: one active, the others retired or staged."""

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys = tuple(keys)
        active = [key for key in self._keys if key.retired_at is None and not key.staged]
        if len(active) != 1:
            raise ConfigurationError(
                "a key ring needs exactly one active (neither retired nor staged) key"
            )
        if any(key.staged and key.retired_at is not None for key in self._keys):
            raise ConfigurationError("a staged key cannot be retired")
        self._active = active[0]
        self._by_kid = {key.kid: key for key in self._keys}
        if len(self._by_kid) != len(self._keys):
            raise ConfigurationError("duplicate kid in the key ring")

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return self._keys

    def find(self, kid: str | None) -> SigningKey | None:
        """The key with this ``kid``; a token without ``kid`` matches only an HS512 ring."""
        if kid is None:
            return self._active if self._active.is_symmetric else None
        return self._by_kid.get(kid)

    @property
    def staged_key(self) -> SigningKey | None:
        """The key staged to sign next, if any."""
        return next((key for key in self._keys if key.staged), None)

    def rotated(self, new_key: SigningKey, *, now: datetime, keep_for: timedelta) -> KeyRing:
        """A ring where ``new_key`` signs and the old keys verify for ``keep_for`` more
        (a key staged before is dropped: it never signed).

        Keys retired longer than ``keep_for`` ago can no longer have valid tokens
        (``keep_for`` is the longest token lifetime) and are dropped.
        """
        kept = []
        for key in self._keys:
            if key.staged:
                continue
            retired_at = key.retired_at or now
            if now - retired_at <= keep_for:
                kept.append(replace(key, retired_at=retired_at))
        return KeyRing([new_key, *kept])

    def with_staged(self, new_key: SigningKey) -> KeyRing:
        """A ring where ``new_key`` verifies, staged to sign at the next rotation (in
        place of a key staged before, which never signed)."""
        kept = [key for key in self._keys if not key.staged]
        return KeyRing([replace(new_key, staged=True, retired_at=None), *kept])

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public keys as a JWK Set (empty for a shared-secret ring)."""
        return {"keys": [public_jwk(key) for key in self._keys if not key.is_symmetric]}


class JwsFault(enum.Enum):
    """Why :func:`verify_jws` refused a token; each caller words it its own way."""

    MALFORMED = "malformed"  # no readable header
    WRONG_TYPE = "wrong_type"  # the header's ``typ`` is not the one asked for
    UNKNOWN_KEY = "unknown_key"  # the ``kid`` names no key of the ring
    ALGORITHM_MISMATCH = "algorithm_mismatch"  # the ``alg`` is not the key's
    BAD_SIGNATURE = "bad_signature"
    WRONG_ISSUER_OR_AUDIENCE = "wrong_issuer_or_audience"
    INVALID_CLAIMS = "invalid_claims"  # a required claim is missing, or PyJWT refused one


class JwsRefused(Exception):
    """A token :func:`verify_jws` refused, and why (``fault``; no secret in it)."""

    def __init__(self, fault: JwsFault) -> None:
        super().__init__(fault.value)
        self.fault = fault


def verify_jws(
    ring: KeyRing,
    token: str,
    *,
    audience: str,
    issuer: str,
    required: list[str],
    typ: str | None = None,
    check_nbf: bool = False,
) -> dict[str, Any]:
    """The payload of ``token``, a JWS signed by a key of ``ring`` (the one its ``kid``
    names), for ``audience`` from ``issuer``, with every claim of ``required``.

    Times are not checked: the caller checks them against its own clock, not PyJWT's
    wall clock; but with ``check_nbf`` PyJWT refuses an ``nbf`` that is not a number or
    is ahead of the wall clock (``INVALID_CLAIMS``), as audit checkpoints always were.
    With ``typ``, the header must name that type. Raises ``JwsRefused``.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise JwsRefused(JwsFault.MALFORMED) from None
    if typ is not None and header.get("typ") != typ:
        raise JwsRefused(JwsFault.WRONG_TYPE)
    kid = header.get("kid")
    key = ring.find(kid if isinstance(kid, str) else None)
    if key is None:
        raise JwsRefused(JwsFault.UNKNOWN_KEY)
    # Each key verifies with its own algorithm only: "none" and algorithm
    # confusion (HS256 keyed with the public key) never reach a signature check.
    if header.get("alg") != key.algorithm:
        raise JwsRefused(JwsFault.ALGORITHM_MISMATCH)
    try:
        payload = jwt.decode(
            token,
            key.public,
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            options={
                "require": required,
                "verify_exp": False,
                "verify_nbf": check_nbf,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise JwsRefused(JwsFault.BAD_SIGNATURE) from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise JwsRefused(JwsFault.WRONG_ISSUER_OR_AUDIENCE) from None
    except jwt.InvalidTokenError:
        raise JwsRefused(JwsFault.INVALID_CLAIMS) from None
    if not isinstance(payload, dict):
        raise JwsRefused(JwsFault.INVALID_CLAIMS)
    return payload


def keyring_to_document(ring: KeyRing) -> dict[str, Any]:
    """Serialise an asymmetric ring (private keys as PKCS#8 PEM) for a 0600 file."""
    entries = []
    for key in ring.keys:
        if isinstance(key.private, bytes):
            raise ValueError("shared-secret keys are configured, never written to a key file")
        pem = key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        entries.append(
            {
                "kid": key.kid,
                "alg": key.algorithm,
                "created_at": key.created_at.isoformat(),
                "retired_at": key.retired_at.isoformat() if key.retired_at else None,
                **({"staged": True} if key.staged else {}),
                "private_key_pem": pem,
            }
        )
    return {"version": 1, "keys": entries}


def keyring_from_document(document: Mapping[str, Any]) -> KeyRing:
    """Inverse of :func:`keyring_to_document`; raises ``ConfigurationError`` when invalid."""
    try:
        if document.get("version") != 1:
            raise ValueError("unsupported key file version")
        keys = [_key_from_entry(entry) for entry in document["keys"]]
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ConfigurationError(f"invalid signing key file: {error}") from None
    return KeyRing(keys)


def _key_from_entry(entry: Mapping[str, Any]) -> SigningKey:
    algorithm = entry["alg"]
    if algorithm not in ("ES256", "EdDSA"):
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    private = serialization.load_pem_private_key(entry["private_key_pem"].encode(), password=None)
    expected = ec.EllipticCurvePrivateKey if algorithm == "ES256" else Ed25519PrivateKey
    if not isinstance(private, expected):
        raise ValueError(f"key {entry['kid']!r} does not match algorithm {algorithm}")
    retired = entry.get("retired_at")
    staged = entry.get("staged", False)
    if not isinstance(staged, bool):
        raise ValueError(f"key {entry['kid']!r}: staged must be true or false")
    key = _asymmetric_key(
        private,
        algorithm,
        created_at=_aware(datetime.fromisoformat(entry["created_at"])),
        retired_at=_aware(datetime.fromisoformat(retired)) if retired else None,
    )
    if key.kid != entry["kid"]:
        raise ValueError(f"kid {entry['kid']!r} does not match its key")
    return replace(key, staged=staged)


def _asymmetric_key(
    private: PrivateKey,
    algorithm: AsymmetricAlgorithm,
    *,
    created_at: datetime,
    retired_at: datetime | None,
) -> SigningKey:
    public = private.public_key()
    probe = SigningKey(
        kid="", algorithm=algorithm, private=private, public=public, created_at=created_at
    )
    return replace(probe, kid=_thumbprint(public_jwk(probe)), retired_at=retired_at)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("key file times need a time zone")
    return moment


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
