"""Browser sessions for the Settings UI: a token in a cookie, and CSRF protection.

The session cookie holds an ordinary access token (the same kind ``/api/authenticate``
issues), so logging out, "log out everywhere", a password change and deactivation end
UI sessions exactly like API sessions. The cookie is ``HttpOnly`` (scripts never see
it), ``SameSite=Strict`` (never sent on cross-site requests) and ``Secure``.

Every state-changing form carries a CSRF token: for a session, an HMAC of the token's
id under a server secret (synchronizer token, nothing to store); before login, the
double-submit value of a short-lived ``authgate_csrf`` cookie. A POST without the right
token is refused (403), whatever its origin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from authgate.security.credentials import secrets_equal

SESSION_COOKIE: Final = "authgate_session"
LOGIN_CSRF_COOKIE: Final = "authgate_login_csrf"
CSRF_FIELD: Final = "csrf_token"


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
