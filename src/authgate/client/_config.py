"""Client settings, from explicit arguments or from the environment; secrets masked.

Variables (``UTMSTACK_*`` are aliases; the ``AUTHGATE_*`` name wins when both are set):

=============================  =============================================================
``AUTHGATE_URL``               the server, e.g. ``https://authgate.example.com``
``AUTHGATE_API_KEY``           method 2: an API key
``AUTHGATE_API_KEY_HEADER``    ``authorization`` (default) or ``utm-api-key``
``AUTHGATE_USERNAME``          method 1: login (or e-mail) ...
``AUTHGATE_PASSWORD``          ... and password
``AUTHGATE_TIMEOUT``           seconds (default 10)
``AUTHGATE_CA_BUNDLE``         a PEM file of CA certificates to trust instead of the system's
``AUTHGATE_CLIENT_CONFIG_DIR``  where ``authgate-client`` keeps its files (default: the
                               user config dir, e.g. ``~/.config/authgate``)
=============================  =============================================================

This module is the client's only reader of the environment: everything else takes
values (or a ``variables`` mapping, so tests pass a dict).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx2

from authgate.client._exceptions import ClientConfigError
from authgate.client._retry import RetryPolicy

__all__ = [
    "DEFAULT_TIMEOUT",
    "ApiKeyCredentials",
    "ApiKeyHeader",
    "ClientConfig",
    "Credentials",
    "PasswordCredentials",
    "RefreshTokenCredentials",
    "TokenCredentials",
    "V12Credentials",
    "client_config_dir",
    "environment",
    "mask_secret",
    "read_ca_bundle",
    "read_credentials",
    "read_timeout",
    "read_url",
    "read_username",
    "shown_request_url",
    "shown_url",
    "url_problem",
]

ApiKeyHeader = Literal["authorization", "utm-api-key"]
DEFAULT_TIMEOUT = 10.0
_MASK = "**********"


def environment() -> Mapping[str, str]:
    """The process environment (read here only)."""
    return os.environ


def mask_secret(secret: str) -> str:
    """A display form that identifies a key without revealing it.

    An authgate key shows its public id (``agk_cIK4tKtaoYB4_…``), which the server also
    shows as the key's ``prefix``; any other secret shows its first 4 characters at most.
    """
    if secret.startswith("agk_") and secret.count("_") >= 2:
        return secret[: secret.index("_", 4) + 1] + "…"
    return (secret[:4] if len(secret) >= 16 else "") + "…"


@dataclass(frozen=True, slots=True)
class ApiKeyCredentials:
    """Method 2: an API key, sent on every request.

    ``header="authorization"`` sends ``Authorization: Bearer <key>`` (authgate and
    UTMStack's documentation); ``header="utm-api-key"`` sends ``Utm-Api-Key: <key>``,
    the only header real UTMStack v11 servers read.
    """

    key: str = field(repr=False)
    header: ApiKeyHeader = "authorization"

    def __post_init__(self) -> None:
        if not self.key.strip():
            raise ClientConfigError("the API key is empty")
        if self.header not in ("authorization", "utm-api-key"):
            raise ClientConfigError("header must be 'authorization' or 'utm-api-key'")

    def __repr__(self) -> str:
        return f"ApiKeyCredentials(key={mask_secret(self.key)!r}, header={self.header!r})"


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    """Method 1: log in with a username (or e-mail) and password; tokens are renewed."""

    username: str
    password: str = field(repr=False)
    remember_me: bool = False

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise ClientConfigError("both a username and a password are needed")

    def __repr__(self) -> str:
        return (
            f"PasswordCredentials(username={self.username!r}, password={_MASK!r}, "
            f"remember_me={self.remember_me!r})"
        )


@dataclass(frozen=True, slots=True)
class TokenCredentials:
    """A bearer token obtained earlier (e.g. stored by ``authgate-client login``).

    It is not renewed: when it expires, requests fail with ``AuthenticationError``.
    """

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.token.strip():
            raise ClientConfigError("the token is empty")

    def __repr__(self) -> str:
        return f"TokenCredentials(token={_MASK!r})"


@dataclass(frozen=True, slots=True)
class V12Credentials:
    """UTMStack v12's token pairs: log in at ``/api/v1/auth/login`` with a login (or
    e-mail) and password, then renew the short access token with the refresh token
    (rotated on every use) instead of logging in again."""

    login: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.login or not self.password:
            raise ClientConfigError("both a login and a password are needed")

    def __repr__(self) -> str:
        return f"V12Credentials(login={self.login!r}, password={_MASK!r})"


@dataclass(frozen=True, slots=True)
class RefreshTokenCredentials:
    """A v12 session resumed from a stored refresh token (and its access token, if still
    usable), e.g. by ``authgate-client``. Without a password, a session that ends
    (logout, revocation, expiry) means logging in again."""

    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.refresh_token.strip():
            raise ClientConfigError("the refresh token is empty")

    def __repr__(self) -> str:
        return f"RefreshTokenCredentials(refresh_token={_MASK!r})"


Credentials = (
    ApiKeyCredentials
    | PasswordCredentials
    | TokenCredentials
    | V12Credentials
    | RefreshTokenCredentials
)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where and how to call the server.

    Args:
        url: the server's base URL (``https://host`` or ``https://host/prefix``).
        credentials: how to authenticate.
        timeout: seconds for connecting, and for each read and write.
        verify: verify TLS certificates (the default). ``False`` is for tests only.
        ca_bundle: a PEM file of CA certificates to trust instead of the system's.
        retry: what to do on 423, 429 and 503.
        refresh_margin: with a password, log in again this many seconds before the
            token's ``exp`` (at most half its lifetime).
    """

    url: str
    credentials: Credentials
    timeout: float = DEFAULT_TIMEOUT
    verify: bool = True
    ca_bundle: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    refresh_margin: float = 30.0

    def __post_init__(self) -> None:
        problem = url_problem(self.url)
        if problem is not None:
            raise ClientConfigError(f"{problem}: {shown_url(self.url)!r}")
        if self.timeout <= 0:
            raise ClientConfigError("timeout must be positive")
        if self.ca_bundle is not None and not self.verify:
            raise ClientConfigError("ca_bundle has no effect with verify=False")
        if self.refresh_margin < 0:
            raise ClientConfigError("refresh_margin must be 0 or more")

    @classmethod
    def from_env(cls, variables: Mapping[str, str] | None = None) -> ClientConfig:
        """Settings from ``AUTHGATE_*`` (or ``UTMSTACK_*``) variables.

        Raises:
            ClientConfigError: no URL, no credentials, both kinds, or a bad value.
        """
        env = environment() if variables is None else variables
        url = read_url(env)
        if url is None:
            raise ClientConfigError("set AUTHGATE_URL (or UTMSTACK_URL) to the server's URL")
        credentials = read_credentials(env)
        if credentials is None:
            raise ClientConfigError(
                "set AUTHGATE_API_KEY, or AUTHGATE_USERNAME and AUTHGATE_PASSWORD"
                " (or their UTMSTACK_* aliases)"
            )
        timeout = read_timeout(env)
        return cls(
            url=url,
            credentials=credentials,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            ca_bundle=read_ca_bundle(env),
        )


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a server's base URL, or None.

    A user name or password in it would show wherever the URL does (errors, ``repr``,
    the CLI's output) and is never how the client authenticates; a query or fragment
    would be lost when paths are joined to it.
    """
    if not url.startswith(("http://", "https://")):
        return "the URL must start with http:// or https://"
    # Any "@" counts: a password holding an unencoded "/", "?" or "#" would otherwise
    # read as a host followed by a path, a query or a fragment.
    if "@" in url:
        return "the URL must not hold a user name or password (they go in the credentials)"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "the URL cannot be read"
    if parts.query or parts.fragment:
        return "the URL must not have a query (?) or fragment (#)"
    return None


def shown_url(url: str) -> str:
    """``url`` for messages, without what may be a secret: everything between the scheme
    and its last "@" (a user name and password) becomes ``***``, a query or fragment
    (a token, say) ``…``."""
    at = url.rfind("@")
    if at != -1:
        scheme_end = url.find("://")
        start = scheme_end + 3 if -1 < scheme_end < at else 0
        url = f"{url[:start]}***{url[at:]}"
    cut = min((i for i in (url.find("?"), url.find("#")) if i != -1), default=-1)
    return url if cut == -1 else f"{url[: cut + 1]}…"


def shown_request_url(url: httpx2.URL) -> str:
    """A request's URL for messages: no user name or password, and no query or fragment
    (``…`` says there was one): UTMStack v10's second step sends the one-time code in
    the query (``GET /api/tfa/verifyCode?code=123456``). The URL is parsed already, so
    its parts are dropped by name (``shown_url`` reads a string that may not parse)."""
    shown = str(url.copy_with(userinfo=b"", query=None, fragment=None))
    return f"{shown}?…" if url.query else shown


def client_config_dir(variables: Mapping[str, str] | None = None) -> Path:
    """``AUTHGATE_CLIENT_CONFIG_DIR``, else the user's config dir for authgate."""
    env = environment() if variables is None else variables
    configured = env.get("AUTHGATE_CLIENT_CONFIG_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs  # imported here: only the CLI needs it, not every SDK user

    return Path(platformdirs.user_config_dir("authgate"))


def _lookup(variables: Mapping[str, str], suffix: str) -> str | None:
    for prefix in ("AUTHGATE_", "UTMSTACK_"):
        value = variables.get(prefix + suffix, "").strip()
        if value:
            return value
    return None


def read_username(variables: Mapping[str, str]) -> str | None:
    """``AUTHGATE_USERNAME`` (or ``UTMSTACK_USERNAME``), if set."""
    return _lookup(variables, "USERNAME")


def read_timeout(variables: Mapping[str, str]) -> float | None:
    """``AUTHGATE_TIMEOUT`` (or ``UTMSTACK_TIMEOUT``) in seconds, if set.

    Raises:
        ClientConfigError: not a positive number.
    """
    value = _lookup(variables, "TIMEOUT")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ClientConfigError(f"AUTHGATE_TIMEOUT is not a number: {value!r}") from None
    if not seconds > 0:  # also refuses nan
        raise ClientConfigError(f"AUTHGATE_TIMEOUT must be a positive number: {value!r}")
    return seconds


def read_ca_bundle(variables: Mapping[str, str]) -> Path | None:
    """``AUTHGATE_CA_BUNDLE`` (or ``UTMSTACK_CA_BUNDLE``), if set."""
    value = _lookup(variables, "CA_BUNDLE")
    return Path(value) if value else None


def read_url(variables: Mapping[str, str]) -> str | None:
    """``AUTHGATE_URL`` (or ``UTMSTACK_URL``), if set."""
    return _lookup(variables, "URL")


def read_credentials(variables: Mapping[str, str]) -> Credentials | None:
    """The credentials the environment names, or None.

    Raises:
        ClientConfigError: both an API key and a username/password, half a pair, or
            an unknown API key header.
    """
    key = _lookup(variables, "API_KEY")
    username = _lookup(variables, "USERNAME")
    password = variables.get("AUTHGATE_PASSWORD") or variables.get("UTMSTACK_PASSWORD")
    if key and (username or password):
        raise ClientConfigError(
            "both an API key and a username/password are set: unset one of them"
        )
    if key:
        header = (_lookup(variables, "API_KEY_HEADER") or "authorization").lower()
        if header not in ("authorization", "utm-api-key"):
            raise ClientConfigError(
                f"AUTHGATE_API_KEY_HEADER must be 'authorization' or 'utm-api-key', not {header!r}"
            )
        return ApiKeyCredentials(
            key, header="utm-api-key" if header == "utm-api-key" else "authorization"
        )
    if username and password:
        return PasswordCredentials(username, password)
    if username or password:
        raise ClientConfigError("set both AUTHGATE_USERNAME and AUTHGATE_PASSWORD")
    return None
