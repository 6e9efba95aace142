"""How a guarded service reaches authgate and how long it trusts what it learned.

Values come from arguments, or from a mapping of ``AUTHGATE_*`` variables passed in by
the caller (``GuardConfig.from_env(os.environ)``): this package never reads the process
environment itself.

==============================  =============================================================
``AUTHGATE_URL``                authgate's base URL, e.g. ``https://authgate.example.com``
``AUTHGATE_JWT_ISSUER``         the ``iss`` authgate writes (its own setting of the same
                                name; default ``authgate``)
``AUTHGATE_JWT_AUDIENCE``       the ``aud`` authgate writes (default ``authgate``)
``AUTHGATE_TIMEOUT``            seconds for each whole call to authgate (default 5)
``AUTHGATE_LOCAL_JWT_MAX_AGE``  seconds after its ``iat`` a JWT is accepted on the local
                                checks alone; an older one is checked by authgate too
                                (default 300; 0: every token is checked by authgate)
==============================  =============================================================
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from authgate import __version__

__all__ = ["SUPPORTED_ALGORITHMS", "GuardConfig", "GuardConfigError"]

# authgate's asymmetric algorithms. HS512 deployments publish no keys: use
# ``verify_jwt_locally=False`` there (tokens are then checked by authgate).
SUPPORTED_ALGORITHMS = frozenset({"ES256", "EdDSA"})


class GuardConfigError(ValueError):
    """The guard is misconfigured (never reported to a caller as bad credentials)."""


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Where authgate is, what its tokens look like, and the cache lifetimes.

    Args:
        authgate_url: authgate's base URL (``https://host`` or ``https://host/prefix``).
        issuer: the ``iss`` every token must carry (authgate's ``AUTHGATE_JWT_ISSUER``).
        audience: the ``aud`` every token must carry; ``None`` skips the check.
        algorithms: the JWT algorithms accepted (each key also pins its own).
        leeway: seconds of clock skew tolerated on ``exp``/``nbf``/``iat``.
        verify_jwt_locally: verify JWTs here against authgate's JWKS (the default: no
            round trip per request). ``False`` sends JWTs to authgate like API keys:
            needed for HS512 deployments, and to see logouts and removed roles at once.
        local_jwt_max_age: with ``verify_jwt_locally``, seconds after its ``iat`` during
            which a token is accepted on the local checks alone. An older token, once it
            passes them, is checked by authgate as in remote mode (cached for
            ``key_cache_ttl``; 503 when authgate cannot answer), so a logout, a
            deactivation or a removed role reaches the guard within this many seconds
            (or ``key_cache_ttl``, if longer). 0: every token is checked by authgate,
            as with ``verify_jwt_locally=False``.
        jwks_ttl: seconds a fetched JWK Set is used before it is fetched again.
        jwks_min_refetch_interval: at least this many seconds between two JWKS fetches
            caused by an unknown ``kid`` or a failed fetch (unknown kids cost nothing then).
        key_cache_ttl: seconds a successful remote verification is reused (0: never).
        key_cache_size: the most remote verifications remembered at once.
        timeout: seconds for each whole call to authgate (a verification or a JWKS
            fetch), from connecting to the last byte of the answer; no call's answer
            can hold a request longer, however slowly it trickles in.
        verify: verify authgate's TLS certificate (the default). ``False``: tests only.
        ca_bundle: a PEM file of CA certificates to trust instead of the system's.
        transport: an ``httpx2`` transport for the calls to authgate (tests pass
            ``httpx2.ASGITransport`` or ``httpx2.MockTransport``).
    """

    authgate_url: str
    issuer: str = "authgate"
    audience: str | None = "authgate"
    algorithms: frozenset[str] = SUPPORTED_ALGORITHMS
    leeway: float = 30.0
    verify_jwt_locally: bool = True
    local_jwt_max_age: float = 300.0
    jwks_ttl: float = 300.0
    jwks_min_refetch_interval: float = 10.0
    key_cache_ttl: float = 10.0
    key_cache_size: int = 10_000
    timeout: float = 5.0
    verify: bool = True
    ca_bundle: Path | None = None
    transport: httpx2.AsyncBaseTransport | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.authgate_url.startswith(("http://", "https://")):
            raise GuardConfigError(
                f"authgate_url must start with http:// or https://: {self.authgate_url!r}"
            )
        if not self.issuer:
            raise GuardConfigError("issuer must not be empty")
        if not self.algorithms or not self.algorithms <= SUPPORTED_ALGORITHMS:
            raise GuardConfigError(
                f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}"
            )
        for name in ("leeway", "jwks_min_refetch_interval", "key_cache_ttl", "local_jwt_max_age"):
            if not getattr(self, name) >= 0:  # NaN too
                raise GuardConfigError(f"{name} must be 0 or more")
        if self.timeout <= 0:
            raise GuardConfigError("timeout must be positive")
        # A JWK Set that expires before a refetch is allowed would leave gaps of 503s.
        if self.jwks_ttl < max(self.jwks_min_refetch_interval, 1.0):
            raise GuardConfigError(
                "jwks_ttl must be at least 1 second and at least jwks_min_refetch_interval"
            )
        if self.key_cache_size < 0:
            raise GuardConfigError("key_cache_size must be 0 or more")
        if self.ca_bundle is not None and not self.verify:
            raise GuardConfigError("ca_bundle has no effect with verify=False")

    @classmethod
    def from_env(
        cls,
        variables: Mapping[str, str],
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> GuardConfig:
        """A config from ``AUTHGATE_*`` variables (pass ``os.environ``).

        Raises:
            GuardConfigError: no URL, or a value that is not valid.
        """
        url = variables.get("AUTHGATE_URL", "").strip()
        if not url:
            raise GuardConfigError("set AUTHGATE_URL to authgate's base URL")
        return cls(
            authgate_url=url,
            issuer=variables.get("AUTHGATE_JWT_ISSUER", "").strip() or "authgate",
            audience=variables.get("AUTHGATE_JWT_AUDIENCE", "").strip() or "authgate",
            timeout=_seconds(variables, "AUTHGATE_TIMEOUT", 5.0),
            local_jwt_max_age=_seconds(variables, "AUTHGATE_LOCAL_JWT_MAX_AGE", 300.0),
            transport=transport,
        )

    def http_client(self) -> httpx2.AsyncClient:
        """The one client the guard uses for every call to authgate."""
        verify: bool | ssl.SSLContext = self.verify
        if self.ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(self.ca_bundle))
        return httpx2.AsyncClient(
            base_url=self.authgate_url.rstrip("/") + "/",
            transport=self.transport,
            timeout=self.timeout,
            verify=verify,
            # Never follow: credentials must not be sent to another host.
            follow_redirects=False,
            headers={"User-Agent": f"authgate-guard/{__version__}"},
        )


def _seconds(variables: Mapping[str, str], name: str, default: float) -> float:
    """The number of seconds ``name`` holds, ``default`` when it is unset or blank."""
    value = variables.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise GuardConfigError(f"{name} is not a number: {value!r}") from None
