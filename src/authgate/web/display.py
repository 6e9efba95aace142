"""How the Settings UI shows stored values: reason codes as sentences, times in ISO 8601,
long identifiers that wrap only between their parts.

The codes stay machine-readable in the REST API, exports and filters; the pages show the
sentence with the code beside it (``title``) so an administrator can still search for it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from markupsafe import Markup, escape

from authgate.clock import format_utc

# Why a login, a key use or a token was refused, and other audit reasons.
REASON_TEXT: Final[dict[str, str]] = {
    # passwords and accounts
    "bad_credentials": "Wrong username or password",
    "wrong_password": "Wrong password",
    "wrong_current_password": "The current password was wrong",
    "unknown_user": "No such user",
    "user_deactivated": "The account is deactivated",
    "corrupt_password_hash": "The stored password could not be read",
    "account_slowdown": "Too many failed logins: the account is slowed down",
    "account_ip_blocked": "Too many failed logins for this account from this address",
    "ip_blocked": "Too many failed logins from this address",
    "too_many_attempts": "Too many attempts",
    # API keys
    "malformed_key": "Not an API key (wrong shape)",
    "bad_checksum": "Not an API key (its checksum is wrong: a typo or a made-up key)",
    "unknown_key": "No such API key",
    "wrong_secret": "Wrong secret for this API key",
    "revoked_key": "The API key is revoked",
    "expired_key": "The API key has expired",
    "suspended_key": "The API key is suspended (its owner was deactivated)",
    "rotated_secret_expired": "A regenerated key's previous secret, after its grace period",
    "owner_inactive": "The key's owner is deactivated",
    "ip_not_allowed": "Address not in the key's allowed IPs",
    "ip_blocked_for_keys": "Too many invalid API keys from this address",
    "too_many_invalid_keys": "Too many invalid API keys from this address",
    "empty_api_key": "An empty API key header",
    "rate_limited": "Over the key's rate limit",
    "scope_admin": "The key lacks the admin scope this endpoint needs",
    "scope_write": "The key is read-only (no write scope)",
    "scope_required": "The key's scopes do not cover this request",
    "session_required": "Needs a password login, not an API key",
    "role_required": "The user lacks the role this endpoint needs",
    "role_admin_required": "Administrators only",
    "permission_required": "The user's roles lack the permission this endpoint needs",
    "role_change_denied": "A change of roles the caller may not make",
    # tokens
    "empty_bearer": "An empty Bearer header",
    "not_a_token": "Not a token",
    "malformed_token": "A malformed token",
    "token_too_long": "A token too long to be real",
    "bad_signature": "The token's signature is wrong",
    "algorithm_not_allowed": "The token uses a refused algorithm",
    "unknown_signing_key": "The token was signed by an unknown key",
    "invalid_claims": "The token's claims are invalid",
    "wrong_issuer_or_audience": "The token is for another issuer or audience",
    "token_expired": "The token has expired",
    "token_not_yet_valid": "The token is not valid yet",
    "token_logged_out": "The token was logged out",
    "token_revoked": "The token was revoked",
    "sessions_revoked": "Issued before a log-out-everywhere or password change",
    # forward-auth
    "forward_auth_denied": "Refused by a forward-auth rule",
    "path_too_long": "The path is too long",
    "duplicate_upstream_header": "A forwarding header was sent twice",
    "conflicting_upstream_header": "Forwarding headers disagree",
    # alert kinds (the reason of ALERT_FIRED)
    "failed_logins_per_account": "Failed logins for one account",
    "failed_logins_per_ip": "Failed logins from one address",
    "failed_logins_global": "Failed logins in total (password spraying)",
    "failed_key_uses_per_key": "Refused uses of one API key",
    "failed_key_uses_per_ip": "Refused API-key requests from one address",
    "key_new_ip": "API key used from a new address",
    "key_after_inactivity": "API key used after a long idle time",
    "lockouts": "Lockouts",
    "admin_actions": "Administrative actions",
    "api_key_expiry": "API key expiry",
}

_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
# Where a long identifier, path or address may wrap: just after one of these.
_AFTER_SEPARATOR = re.compile(r"(?<=[_/.:,?=&-])")


def reason_text(code: str | None) -> str:
    """A sentence for a reason code; an unknown snake_case code as words; other text as is."""
    if not code:
        return ""
    if code in REASON_TEXT:
        return REASON_TEXT[code]
    if _CODE.fullmatch(code):
        return code.replace("_", " ").capitalize()
    return code


def breakable(value: object) -> Markup:
    """``value`` escaped, with a ``<wbr>`` after each separator: a narrow column wraps
    ``API_KEY_ACCESS_FAILURE`` or ``/api/api-keys/7`` between parts, never mid-word."""
    if value is None:
        return Markup("")
    parts = _AFTER_SEPARATOR.split(str(value))
    return Markup("<wbr>").join(escape(part) for part in parts if part)


def iso(moment: datetime | None, precision: str = "seconds") -> str:
    """ISO 8601 in UTC: ``2026-12-04T22:12:36Z`` (``minutes``: no seconds; ``date``:
    ``2026-12-04``). A naive time is taken as UTC."""
    if moment is None:
        return ""
    if precision == "date":
        return format_utc(moment, timespec="minutes").partition("T")[0]
    return format_utc(moment, timespec="minutes" if precision == "minutes" else "seconds")


# A User-Agent names many products ("Mozilla/5.0 (X11; Linux x86_64) ... Chrome/131
# Safari/537.36"); the first match below, most specific first, names the browser.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
_PRODUCT = re.compile(r"^([A-Za-z][\w.-]{0,40})(?:/([\w.-]{1,20}))?")


def device(user_agent: str | None) -> str:
    """A session's User-Agent as people name the device: ``Firefox on Linux``, or for a
    script the product and version it sends first (``authgate-client 0.1.0``, ``curl
    8.5.0``). The full string stays in the ``title``, for whoever needs it."""
    if not user_agent or not user_agent.strip():
        return "Unknown device"
    agent = user_agent.strip()
    if agent.startswith("Mozilla/"):
        browser = next((name for marker, name in _BROWSERS if marker in agent), "Browser")
        system = next((name for marker, name in _SYSTEMS if marker in agent), None)
        return f"{browser} on {system}" if system else browser
    match = _PRODUCT.match(agent)
    if match is None:
        return "Unknown device"
    product, version = match.groups()
    return f"{product} {version}" if version else product
