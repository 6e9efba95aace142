"""What ``Client`` and ``AsyncClient`` share: everything but I/O.

Settings, the auth flow, building requests, the retry decision and turning transport
failures into :class:`TransportError`. The two clients only send; what each typed
helper sends and how it reads the answer lives in ``_endpoints``, shared by both.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Generator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import httpx2

from authgate import __version__
from authgate.client._auth import Clock, LoginAuth, SecondFactorHook, auth_for
from authgate.client._config import (
    ClientConfig,
    RefreshTokenCredentials,
    V12Credentials,
    shown_request_url,
    shown_url,
)
from authgate.client._exceptions import (
    ClientClosedError,
    ClientConfigError,
    TransportError,
    parse_retry_after,
)
from authgate.client._log_redaction import install_log_redaction
from authgate.client._models import Token
from authgate.client._token_pair import TokenPairAuth, TokensHook

__all__ = ["USER_AGENT", "Params", "has_dot_segment", "query"]

USER_AGENT = f"authgate-client/{__version__}"

Params = Mapping[str, str | int | Sequence[str]] | Sequence[tuple[str, str]] | None


def query(params: Params) -> Mapping[str, str | int | Sequence[str]] | tuple[tuple[str, str], ...]:
    """Query parameters as httpx takes them (pairs keep their order and repeats)."""
    if params is None:
        return ()
    if isinstance(params, Mapping):
        return params
    return tuple(params)


def has_dot_segment(path: str) -> bool:
    """Whether a segment of ``path`` (before any query or fragment) is ``.`` or ``..``,
    once percent-decoded (``%2e%2e``, ``..%2f``), with ``\\`` read as ``/`` as some
    servers do. httpx resolves ``../`` itself and servers or proxies the decoded forms,
    so ``../../x`` from ``https://host/prefix`` would reach ``https://host/x`` with the
    client's credentials, outside the prefix the client was given."""
    path_part = re.split(r"[?#]", path, maxsplit=1)[0]
    segments = re.split(r"[/\\]", unquote(path_part))
    # ``..;x``: Tomcat and Spring drop a segment's ``;params`` before resolving it.
    return any(segment.split(";", 1)[0] in (".", "..") for segment in segments)


class _BaseClient:
    """Settings, auth, request building and answer checking; no I/O."""

    def __init__(
        self,
        config: ClientConfig | None,
        *,
        second_factor: SecondFactorHook | None,
        clock: Clock,
        on_tokens: TokensHook | None,
    ) -> None:
        install_log_redaction()  # httpcore2 logs response headers at DEBUG: a login's token
        self._config = config if config is not None else ClientConfig.from_env()
        self._base_url = httpx2.URL(self._config.url.rstrip("/") + "/")
        credentials = self._config.credentials
        self._auth: httpx2.Auth
        if isinstance(credentials, V12Credentials | RefreshTokenCredentials):
            self._auth = TokenPairAuth(
                credentials,
                base_url=self._base_url,
                clock=clock,
                refresh_margin=self._config.refresh_margin,
                on_tokens=on_tokens,
                second_factor=second_factor,
                user_agent=USER_AGENT,
            )
        else:
            self._auth = auth_for(
                credentials,
                base_url=self._base_url,
                second_factor=second_factor,
                clock=clock,
                refresh_margin=self._config.refresh_margin,
                user_agent=USER_AGENT,
            )

    @property
    def config(self) -> ClientConfig:
        return self._config

    @property
    def token(self) -> Token | None:
        """With a password or a v12 session: the current (access) token, None before the
        first login."""
        if isinstance(self._auth, LoginAuth | TokenPairAuth):
            return self._auth.token
        return None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} url={self._config.url!r}"
            f" credentials={self._config.credentials!r}>"
        )

    def _http_options(self) -> dict[str, Any]:
        config = self._config
        verify: bool | ssl.SSLContext = config.verify
        if config.ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=str(config.ca_bundle))
            except (OSError, ssl.SSLError) as error:  # missing, unreadable, not PEM
                raise ClientConfigError(
                    f"cannot use the CA bundle {str(config.ca_bundle)!r}: {error}"
                ) from None
        return {
            "base_url": self._base_url,
            "timeout": config.timeout,
            "verify": verify,
            # Redirects are not followed: the credentials must not go to another host.
            "follow_redirects": False,
            "headers": {"User-Agent": USER_AGENT},
        }

    def _login_auth(self) -> LoginAuth | TokenPairAuth:
        if not isinstance(self._auth, LoginAuth | TokenPairAuth):
            raise ClientConfigError("login() needs a username and password")
        return self._auth

    def _login_flow(self) -> Generator[httpx2.Request, httpx2.Response, Token]:
        auth = self._login_auth()
        if isinstance(auth, TokenPairAuth):
            pair = yield from auth.login_flow()
            return pair.access
        return (yield from auth.login_flow())

    def _v12_logout_flow(self) -> Generator[httpx2.Request, httpx2.Response, None] | None:
        """With v12 token pairs, ending the session; None for other credentials."""
        return self._auth.logout_flow() if isinstance(self._auth, TokenPairAuth) else None

    def _target(self, path: str) -> str:
        """A path relative to the base URL; other hosts are refused (credentials leak),
        and so are dot segments (see :func:`has_dot_segment`)."""
        if has_dot_segment(path):
            raise ClientConfigError(
                f"{shown_url(path)!r} has a '.' or '..' segment (perhaps percent-encoded),"
                f" which could leave {self._config.url!r}: the client refuses it; give"
                " the path without them"
            )
        url = httpx2.URL(path)
        if url.is_absolute_url:
            base = self._base_url
            if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
                raise ClientConfigError(
                    f"{path!r} is on another server than {self._config.url!r}; "
                    "the client only sends its credentials to its own server"
                )
            if not url.raw_path.startswith(base.raw_path):
                raise ClientConfigError(f"{path!r} is outside {self._config.url!r}")
            return url.raw_path[len(base.raw_path) :].decode("ascii")
        return path.lstrip("/")

    def _retry_delay(self, response: httpx2.Response, retries_done: int) -> float | None:
        return self._config.retry.delay(
            method=response.request.method,
            status=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            retries_done=retries_done,
        )

    def _closed_error(self) -> ClientClosedError:
        return ClientClosedError(
            f"this {type(self).__name__} was closed (close(), aclose() or the end of its"
            " with block): create a new client, or keep this one open while it is used"
        )

    @staticmethod
    def _transport_error(error: httpx2.TransportError) -> TransportError:
        """The SDK's error for ``error``, naming the request without its query (a
        one-time code may be in it) or user info, in the message and in httpx's text."""
        detail = _detail(error)
        try:
            url = error.request.url
        except RuntimeError:  # httpx raises when no request is attached
            return TransportError(f"{type(error).__name__}: {detail}")
        shown = shown_request_url(url)
        detail = detail.replace(str(url), shown)
        return TransportError(
            f"{type(error).__name__} calling {error.request.method} {shown}: {detail}"
        )


def _detail(error: BaseException) -> str:
    """The first message down ``error``'s chain of causes: httpx's ``ReadError`` for a
    connection that broke under anyio has none of its own (``BrokenResourceError``);
    without any, the names of the errors in the chain."""
    names: list[str] = []
    current: BaseException | None = error
    while current is not None and len(names) < 10:  # a chain may loop
        text = str(current).strip()
        if text:
            return text
        names.append(type(current).__name__)
        current = current.__cause__ or current.__context__
    return f"no message from the network layer (underlying error: {names[-1]})"
