"""Notices after a form ("Session revoked.", "User bob created."): set by the redirect
that follows the form, shown once by the page it leads to.

A notice travels in a short-lived signed cookie, never in the URL: a link must not make
a page show text of someone else's choosing as authgate's own word ("Security notice:
your password expired. Reset it at https://evil.example/reset"). The cookie is signed
with a key derived from the server's secret (so any node can read it), names the path it
is for and expires within a minute, and the page that shows it clears it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Final

from authgate.security.credentials import secrets_equal

# Long enough for a redirect to be followed, short enough that a notice that was never
# shown (the redirect not followed) does not turn up on a later visit.
NOTICE_MAX_AGE: Final = 60


def notice_secret(pepper: bytes) -> bytes:
    """The key that signs notices, derived from the server's secret."""
    return hmac.new(pepper, b"authgate-ui-notice", hashlib.sha256).digest()


def seal_notice(secret: bytes, text: str, *, path: str, now: datetime) -> str:
    """The cookie value that makes the page at ``path`` show ``text`` once."""
    until = int(now.timestamp()) + NOTICE_MAX_AGE
    payload = _encode(json.dumps({"text": text, "path": path, "until": until}).encode())
    return f"{payload}.{_signature(secret, payload)}"


def open_notice(secret: bytes, value: str, *, path: str, now: datetime) -> str | None:
    """The notice's text when ``value`` was sealed here, for ``path``, and has not
    expired; ``None`` for anything else (another page's notice, or any forged value)."""
    payload, _, signature = value.partition(".")
    if not secrets_equal(signature, _signature(secret, payload)):
        return None
    try:
        notice = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    if notice["path"] != path or notice["until"] < now.timestamp():
        return None
    text: str = notice["text"]
    return text


def _signature(secret: bytes, payload: str) -> str:
    return _encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def _encode(raw: bytes) -> str:
    # Cookie-safe characters only: no quoting, no padding.
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
