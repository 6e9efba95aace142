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
from authgate.reasons import Reason

# Why a login, a key use or a token was refused, and other audit reasons: one sentence
# for every ``Reason`` (tests/web/test_display.py checks that none lacks one).
REASON_TEXT: Final[dict[Reason, str]] = {
    # an error's generic code
    Reason.ERROR: "Request failed",
    Reason.UNAUTHORIZED: "Not authenticated",
    Reason.CREDENTIALS_MISSING: "No credentials were sent",
    Reason.DUPLICATE_CREDENTIALS: "Two Authorization or Utm-Api-Key headers",
    Reason.BAD_CREDENTIALS: "Wrong username or password",
    Reason.INVALID_TOKEN: "An invalid token",
    Reason.TOKEN_EXPIRED: "The token has expired",
    Reason.TOKEN_REVOKED: "The token was revoked",
    Reason.INVALID_SECOND_FACTOR: "A wrong second-factor code",
    Reason.FORBIDDEN: "Access denied",
    Reason.INTERNAL_KEY_REFUSED: "The internal key was refused",
    Reason.INVALID_INTERNAL_KEY: "An invalid internal key",
    Reason.INVALID_API_KEY: "An invalid API key",
    Reason.API_KEY_EXPIRED: "The API key has expired",
    Reason.API_KEY_OWNER_INACTIVE: "The key's owner is deactivated",
    Reason.API_KEY_SUSPENDED: "The API key is suspended (its owner was deactivated)",
    Reason.INSUFFICIENT_SCOPE: "The key's scopes do not cover this request",
    Reason.NOT_FOUND: "Not found",
    Reason.CONFLICT: "A conflict with the stored state",
    Reason.VALIDATION_FAILED: "The request is invalid",
    Reason.AMBIGUOUS_UPSTREAM_REQUEST: "The upstream request can be read two ways",
    Reason.AMBIGUOUS_UPSTREAM_PATH: "The upstream path can be read two ways",
    Reason.TOO_MANY_ATTEMPTS: "Too many attempts",
    Reason.CLIENT_BLOCKED: "This address is blocked",
    Reason.OVERLOADED: "Too many sign-ins being checked at once",
    Reason.UNAVAILABLE: "Temporarily unavailable",
    Reason.INVALID_REFRESH_TOKEN: "An invalid refresh token",
    Reason.RESET_KEY_INVALID: "An invalid password reset link",
    Reason.RESET_KEY_EXPIRED: "An expired password reset link",
    # passwords and accounts
    Reason.WRONG_PASSWORD: "Wrong password",
    Reason.WRONG_CURRENT_PASSWORD: "The current password was wrong",
    Reason.UNKNOWN_USER: "No such user",
    Reason.USER_DEACTIVATED: "The account is deactivated",
    Reason.USER_DELETED: "The account was deleted",
    Reason.CORRUPT_PASSWORD_HASH: "The stored password could not be read",
    Reason.PASSWORD_CHANGED_MEANWHILE: "The password was changed by another request meanwhile",
    # brute-force protection and rate limits
    Reason.ACCOUNT_SLOWDOWN: "Too many failed logins: the account is slowed down",
    Reason.ACCOUNT_IP_BLOCKED: "Too many failed logins for this account from this address",
    Reason.IP_BLOCKED: "Too many failed logins from this address",
    Reason.CONCURRENT_LOGINS: "Too many logins from this address at once",
    Reason.IP_BLOCKED_FOR_KEYS: "Too many invalid API keys from this address",
    Reason.TOO_MANY_INVALID_KEYS: "Too many invalid API keys from this address",
    Reason.RATE_LIMITED: "Over the key's rate limit",
    Reason.HASHING_OVERLOADED: "Too many sign-ins being checked at once",
    Reason.SECOND_FACTOR_LOCKED: "Too many wrong second-factor codes: locked for a while",
    Reason.CODE_RESEND_TOO_SOON: "A new code was asked for too soon",
    # API keys
    Reason.MALFORMED_KEY: "Not an API key (wrong shape)",
    Reason.BAD_CHECKSUM: "Not an API key (its checksum is wrong: a typo or a made-up key)",
    Reason.UNKNOWN_KEY: "No such API key",
    Reason.WRONG_SECRET: "Wrong secret for this API key",
    Reason.REVOKED_KEY: "The API key is revoked",
    Reason.EXPIRED_KEY: "The API key has expired",
    Reason.SUSPENDED_KEY: "The API key is suspended (its owner was deactivated)",
    Reason.ROTATED_SECRET_EXPIRED: "A regenerated key's previous secret, after its grace period",
    Reason.OWNER_INACTIVE: "The key's owner is deactivated",
    Reason.IP_NOT_ALLOWED: "Address not in the key's allowed IPs",
    Reason.EMPTY_API_KEY: "An empty API key header",
    Reason.FIRST_USE: "The key's first use",
    Reason.AFTER_INACTIVITY: "The key was used after a long idle time",
    Reason.NEW_ADDRESS: "The key was used from a new address",
    Reason.MANY_ADDRESSES: "Used from over 256 networks: for an hour, a new one recorded "
    "at most once a minute",
    # what a caller may do
    Reason.SCOPE_ADMIN: "The key lacks the admin scope this endpoint needs",
    Reason.SCOPE_WRITE: "The key is read-only (no write scope)",
    Reason.SCOPE_READ: "The key has neither the read nor the write scope",
    Reason.SCOPE_REQUIRED: "The key's scopes do not cover this request",
    Reason.SESSION_REQUIRED: "Needs a password login, not an API key",
    Reason.SECOND_FACTOR_REQUIRED: "Needs a login with the second factor",
    Reason.ROLE_REQUIRED: "The user lacks the role this endpoint needs",
    Reason.ROLE_ADMIN_REQUIRED: "Administrators only",
    Reason.ROLE_ANALYST_REQUIRED: "Analysts only",
    Reason.ROLE_VIEWER_REQUIRED: "Viewers only",
    Reason.ROLE_USER_REQUIRED: "Users only",
    Reason.PERMISSION_REQUIRED: "The user's roles lack the permission this endpoint needs",
    Reason.ROLE_CHANGE_DENIED: "A change of roles the caller may not make",
    Reason.INTERNAL_ONLY: "A user or API key on an internal endpoint",
    # tokens
    Reason.EMPTY_BEARER: "An empty Bearer header",
    Reason.NOT_A_TOKEN: "Not a token",
    Reason.MALFORMED_TOKEN: "A malformed token",
    Reason.TOKEN_TOO_LONG: "A token too long to be real",
    Reason.BAD_SIGNATURE: "The token's signature is wrong",
    Reason.ALGORITHM_NOT_ALLOWED: "The token uses a refused algorithm",
    Reason.UNKNOWN_SIGNING_KEY: "The token was signed by an unknown key",
    Reason.INVALID_CLAIMS: "The token's claims are invalid",
    Reason.WRONG_ISSUER_OR_AUDIENCE: "The token is for another issuer or audience",
    Reason.TOKEN_NOT_YET_VALID: "The token is not valid yet",
    Reason.TOKEN_LOGGED_OUT: "The token was logged out",
    Reason.TOKEN_USED: "The token was already used",
    Reason.SESSIONS_REVOKED: "Issued before a log-out-everywhere or password change",
    Reason.SESSION_REVOKED: "The token's session was ended",
    # sessions
    Reason.MALFORMED_REFRESH_TOKEN: "A malformed refresh token",
    Reason.UNKNOWN_REFRESH_TOKEN: "No such refresh token",
    Reason.REFRESH_TOKEN_REUSED: "A refresh token used twice (the session was ended)",
    Reason.SESSION_ENDED: "The session has ended",
    Reason.SESSION_CAP: "Too many sessions: the oldest was ended",
    Reason.SESSION_NOT_FOUND: "No such session",
    Reason.REVOKED_BY_USER: "Ended by the user",
    Reason.LOGOUT: "Logged out",
    Reason.SECOND_FACTOR: "Ended when a second factor was turned on",
    # the second factor
    Reason.WRONG_CODE: "A wrong second-factor code",
    Reason.WRONG_ENROLMENT_CODE: "A wrong code while setting up the second factor",
    Reason.NO_SECOND_FACTOR: "No second factor is enabled",
    Reason.SECOND_FACTOR_ENABLED: "A second factor is already enabled",
    Reason.ENROLMENT_NOT_STARTED: "The second factor's setup was not started",
    Reason.ENROLMENT_NOT_VERIFIED: "The second factor's setup was not confirmed",
    Reason.DISABLED_BY_USER: "Turned off by the user",
    Reason.RESET_BY_ADMIN: "Reset by an administrator",
    Reason.SECRET_UNREADABLE: "The stored second-factor secret could not be read",
    Reason.MAIL_NOT_SENT: "The code could not be mailed",
    Reason.BYPASS_HEADER: "The second factor was skipped by the bypass header",
    # forward-auth
    Reason.FORWARD_AUTH_DENIED: "Refused by a forward-auth rule",
    Reason.DUPLICATE_UPSTREAM_HEADER: "A forwarding header was sent twice",
    Reason.CONFLICTING_UPSTREAM_HEADER: "Forwarding headers disagree",
    Reason.METHOD_NOT_UPPER_CASE: "The method is not in upper case",
    Reason.INVALID_METHOD_OVERRIDE: "A method override names no method",
    Reason.PATH_TOO_LONG: "The path is too long",
    Reason.PATH_FRAGMENT: "The path has a fragment (#)",
    Reason.PATH_ENCODED_SEPARATOR: "The path has an encoded slash or dot",
    Reason.PATH_DOUBLE_ENCODED: "The path is encoded twice",
    Reason.PATH_BACKSLASH: "The path has a backslash",
    Reason.PATH_CONTROL_CHARACTER: "The path has a control character",
    Reason.PATH_NOT_BYTES: "The path is not a request line's bytes",
    Reason.PATH_NOT_UTF8: "The path is not UTF-8",
    Reason.PATH_PARAMETER: "The path has ;parameters",
    Reason.PATH_DOT_SEGMENT: "The path has a . or .. segment",
    Reason.PATH_EMPTY_SEGMENT: "The path has an empty segment (//)",
    Reason.PATH_TRAILING_DOT: "A path segment ends in a dot or a space",
    Reason.PATH_ABOVE_ROOT: "The path climbs above the root (..)",
    Reason.PATH_DOTS_ONLY_SEGMENT: "The path has a segment of dots or spaces only",
    # service credentials
    Reason.INTERNAL_KEY_MISSING: "No internal key was sent",
    Reason.UNKNOWN_INTERNAL_KEY: "No such internal key",
    Reason.INTERNAL_KEY_REVOKED: "The internal key is revoked",
    Reason.WRONG_INTERNAL_KEY: "Wrong secret for this internal key",
    Reason.ENDPOINT_NOT_ALLOWED: "The internal key may not call this endpoint",
    Reason.SERVICE_CREDENTIAL_UNKNOWN: "No such service credential",
    Reason.SERVICE_CREDENTIAL_REVOKED: "The service credential is revoked",
    Reason.SERVICE_CREDENTIAL_NAME_EXISTS: "A service credential with this name exists",
    Reason.SERVICE_SECRET_IN_USE: "This secret is (or was) another service credential's",
    # administration
    Reason.USER_NOT_FOUND: "No such user",
    Reason.USER_EXISTS: "The login name or e-mail is already used",
    Reason.LOGIN_EXISTS: "The login name is already used",
    Reason.EMAIL_EXISTS: "The e-mail address is already used",
    Reason.SELF_DELETE: "Administrators cannot delete their own account",
    Reason.SELF_DEACTIVATE: "Administrators cannot deactivate their own account",
    Reason.SELF_DEMOTE: "Administrators cannot remove their own admin role",
    Reason.LAST_ADMIN: "The last administrator cannot be removed",
    Reason.ID_MISMATCH: "The id in the body is not the one in the path",
    Reason.LOGIN_MISMATCH: "The login in the body is not the one in the path",
    Reason.NO_MAIL: "No e-mail can be sent",
    Reason.ROLE_NOT_FOUND: "No such role",
    Reason.ROLE_IMMUTABLE: "The built-in roles cannot be changed",
    Reason.UNKNOWN_ROLE: "An unknown role",
    Reason.API_KEY_NOT_FOUND: "No such API key",
    Reason.API_KEY_NOT_VISIBLE: "An API key the caller may not see",
    Reason.API_KEY_REVOKED: "The API key is revoked",
    Reason.API_KEY_NAME_EXISTS: "An API key with this name exists",
    Reason.ALERT_RULE_NOT_FOUND: "No such alert rule",
    Reason.ALERT_RULE_EXISTS: "An alert rule with this name exists",
    # password resets asked for
    Reason.THROTTLED: "Too many reset requests",
    Reason.UNKNOWN_EMAIL: "No account has this e-mail address",
    Reason.MAIL_NOT_CONFIGURED: "No mail server is configured",
    Reason.MAIL_FAILED: "The reset mail could not be sent",
    # the audit chain
    Reason.HEAD_NOT_SIGNED: "The newest audit record is not signed with the audit key",
    Reason.HEAD_SIGNATURE_MISMATCH: "The newest audit record's signature is wrong",
}

# The reason of ALERT_FIRED: the alert's kind.
ALERT_KIND_TEXT: Final[dict[str, str]] = {
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
    reason = Reason.lookup(code)
    if reason is not None:
        return REASON_TEXT[reason]
    if code in ALERT_KIND_TEXT:
        return ALERT_KIND_TEXT[code]
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
