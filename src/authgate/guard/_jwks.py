"""authgate's public signing keys (``GET /.well-known/jwks.json``), fetched and cached.

* A fetched set is used for ``jwks_ttl`` seconds, then fetched again on the next JWT.
* A token whose ``kid`` is not in the set causes a fetch, so a key rotation at authgate
  is picked up at once, but at most one fetch per ``jwks_min_refetch_interval``: a flood
  of tokens with made-up ``kid`` values costs authgate one request per interval.
* A failed fetch also waits out that interval before the next try, so a guard never
  hammers an authgate that is down.
* Concurrent requests share one fetch (a lock; the fast path takes none).
* A fetch that has not fully answered within ``timeout`` seconds has failed.
* When no usable set can be had, :class:`AuthgateUnavailable` is raised (503): a token
  is never accepted without a verified signature.

Only asymmetric keys of the configured algorithms are kept; each key pins its own
algorithm, so ``none`` and algorithm confusion never reach a signature check.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import jwt

from authgate.guard._errors import AuthgateUnavailable
from authgate.guard._link import Answer, AuthgateLink, LinkFailure

__all__ = ["JWKS_PATH", "JwksCache", "VerificationKey"]

JWKS_PATH = ".well-known/jwks.json"
_MAX_JWKS_BYTES = 256 * 1024  # a ring of a few keys is ~1 KB

log = logging.getLogger("authgate.guard")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    algorithm: str
    key: jwt.PyJWK


class JwksCache:
    """The current JWK Set of one authgate, by ``kid``."""

    def __init__(
        self,
        link: AuthgateLink,
        *,
        algorithms: frozenset[str],
        ttl: float,
        min_refetch_interval: float,
        timeout: float,
        timer: Callable[[], float],
    ) -> None:
        self._link = link
        self._timeout = timeout
        self._algorithms = algorithms
        self._ttl = ttl
        self._min_interval = min_refetch_interval
        self._timer = timer  # monotonic: deadlines only
        self._keys: dict[str, VerificationKey] = {}
        self._fresh_until = float("-inf")
        self._last_attempt: float | None = None
        self._lock = anyio.Lock()

    async def key_for(self, kid: str) -> VerificationKey | None:
        """The key with this ``kid``, ``None`` if authgate does not publish it.

        Raises:
            AuthgateUnavailable: the set has expired and cannot be fetched.
        """
        if self._timer() < self._fresh_until:
            key = self._keys.get(kid)
            if key is not None:
                return key
        async with self._lock:
            # Another request may have fetched while this one waited.
            now = self._timer()
            fresh = now < self._fresh_until
            if fresh and kid in self._keys:
                return self._keys[kid]
            if not self._may_fetch(now):
                if fresh:
                    return None  # unknown kid, and a fetch happened moments ago
                raise AuthgateUnavailable()
            await self._fetch(now)
            return self._keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self._min_interval

    async def _fetch(self, now: float) -> None:
        self._last_attempt = now
        try:
            # The whole fetch, not each read (see RemoteVerifier._ask).
            with anyio.fail_after(self._timeout):
                response = await self._link.get(
                    JWKS_PATH, headers={"Accept": "application/json"}, limit=_MAX_JWKS_BYTES
                )
        except (httpx2.HTTPError, TimeoutError, LinkFailure) as error:
            log.warning("authgate unreachable for its JWKS: %s", type(error).__name__)
            raise AuthgateUnavailable() from None
        keys = _parse(response, self._algorithms)
        if keys is None:
            log.error("authgate's JWKS answer is unusable (HTTP %s)", response.status_code)
            raise AuthgateUnavailable()
        if not keys:
            # Every token would be refused as invalid: say why once per fetch.
            log.warning(
                "authgate's JWKS has no key the guard can use (algorithms allowed: %s)",
                ", ".join(sorted(self._algorithms)),
            )
        self._keys = keys
        self._fresh_until = now + self._ttl

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)


def _parse(response: Answer, algorithms: frozenset[str]) -> dict[str, VerificationKey] | None:
    """The usable keys of a JWKS answer; ``None`` when it is not a JWK Set at all."""
    if response.status_code != 200:
        return None
    try:
        document: Any = json.loads(response.content)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return None
    keys: dict[str, VerificationKey] = {}
    for entry in document["keys"]:
        key = _key(entry, algorithms)
        if key is not None:
            keys[key.kid] = key
    return keys


def _key(entry: Any, algorithms: frozenset[str]) -> VerificationKey | None:
    if not isinstance(entry, dict):
        return None
    kid, algorithm = entry.get("kid"), entry.get("alg")
    if not isinstance(kid, str) or not kid or algorithm not in algorithms:
        return None
    if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
        return None
    try:
        parsed = jwt.PyJWK(entry, algorithm=algorithm)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        log.warning("authgate published a key that cannot be used (kid %s)", kid)
        return None
    return VerificationKey(kid=kid, algorithm=str(algorithm), key=parsed)
