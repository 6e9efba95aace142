"""Browser sessions for the Settings UI: a token in a cookie, and CSRF protection.

The session cookie holds an ordinary access token (the same kind ``/api/authenticate``
issues), so logging out, "log out everywhere", a password change and deactivation end
UI sessions exactly like API sessions. The cookie is ``HttpOnly`` (scripts never see
it), ``SameSite=Strict`` (never sent on cross-site requests), ``Secure`` and named with
the ``__Host-`` prefix: browsers accept it only from a secure origin, with ``Path=/``
and no ``Domain``, so neither a sibling subdomain nor a plain-HTTP man in the middle
can plant or overwrite it (cookie tossing, session fixation).

Browsers accept ``Secure`` cookies from ``https://`` and from ``http://localhost`` /
``127.0.0.1`` (secure contexts); from any other ``http://`` origin they drop them, and
sign-in cannot work: the sign-in page says that HTTPS is required instead. A lab
without TLS may set ``AUTHGATE_UI_INSECURE_HTTP=true``: plain cookie names without
``Secure`` (the session token then crosses the network in clear).

Every state-changing form carries a CSRF token: for a session, an HMAC of the token's
id under a server secret (synchronizer token, nothing to store); before login, the
double-submit value of a short-lived login CSRF cookie. A POST without the right
token is refused (403), whatever its origin.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from starlette.responses import Response

from authgate.security.credentials import secrets_equal

CSRF_FIELD: Final = "csrf_token"
LOGIN_CSRF_MAX_AGE: Final = 3600


@dataclass(frozen=True, slots=True)
class UiCookies:
    """The names and attributes of the Settings UI's two cookies."""

    session: str
    login_csrf: str
    secure: bool
    # The pre-verification token between the password and the second factor (5 min).
    pending: str = "authgate_tfa"
    # The notice the page after a form shows once (web/notices.py).
    notice: str = "authgate_notice"

    def set_session(self, response: Response, token: str, *, lifetime: timedelta) -> None:
        """The cookie lives as long as the token in it."""
        self._set(response, self.session, token, max_age=int(lifetime.total_seconds()))

    def clear_session(self, response: Response) -> None:
        self._clear(response, self.session)

    def set_pending(self, response: Response, token: str, *, lifetime: timedelta) -> None:
        self._set(response, self.pending, token, max_age=int(lifetime.total_seconds()))

    def clear_pending(self, response: Response) -> None:
        self._clear(response, self.pending)

    def set_notice(self, response: Response, value: str, *, max_age: int) -> None:
        self._set(response, self.notice, value, max_age=max_age)

    def clear_notice(self, response: Response) -> None:
        self._clear(response, self.notice)

    def set_login_csrf(self, response: Response, token: str) -> None:
        self._set(response, self.login_csrf, token, max_age=LOGIN_CSRF_MAX_AGE)

    def clear_login_csrf(self, response: Response) -> None:
        self._clear(response, self.login_csrf)

    def _set(self, response: Response, name: str, value: str, *, max_age: int) -> None:
        # Path=/ and no Domain: what the __Host- prefix requires.
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def _clear(self, response: Response, name: str) -> None:
        # A __Host- cookie is only replaced by one with the same prefix rules (Secure).
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="strict")


SECURE_COOKIES: Final = UiCookies(
    session="__Host-authgate_session",
    login_csrf="__Host-authgate_login_csrf",
    secure=True,
    pending="__Host-authgate_tfa",
    notice="__Host-authgate_notice",
)
# AUTHGATE_UI_INSECURE_HTTP=true, for labs without TLS only.
LAB_COOKIES: Final = UiCookies(
    session="authgate_session", login_csrf="authgate_login_csrf", secure=False
)


def ui_cookies(*, insecure_http: bool) -> UiCookies:
    return LAB_COOKIES if insecure_http else SECURE_COOKIES


def secure_cookies_dropped(*, scheme: str | None, hostname: str | None) -> bool:
    """Whether a browser drops ``Secure`` cookies set by a page at ``scheme://hostname``:
    over plain HTTP, except on loopback names and addresses (secure contexts).
    An unknown scheme (``None``) is not reported: better no warning than a wrong one."""
    if scheme != "http":
        return False
    return not is_loopback_name(hostname or "")


def is_loopback_name(hostname: str) -> bool:
    """``localhost``, a ``*.localhost`` name, or a loopback address (brackets allowed)."""
    name = hostname.strip().lower().rstrip(".").strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def csrf_secret(pepper: bytes) -> bytes:
    """A key for CSRF tokens, derived from the server's secret (shared by all nodes)."""
    return hmac.new(pepper, b"authgate-ui-csrf", hashlib.sha256).digest()


def session_csrf_token(secret: bytes, session_id: str) -> str:
    return hmac.new(secret, session_id.encode(), hashlib.sha256).hexdigest()


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Whether the form's token is the expected one (any text may be presented)."""
    return presented is not None and secrets_equal(presented, expected)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
