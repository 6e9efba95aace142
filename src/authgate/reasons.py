"""Why something was refused or recorded: one ``Reason`` per code, the one vocabulary.

A reason is what ``AuthgateError.reason`` carries (an error's ``code`` when nothing more
precise is known), what an audit record's and a usage row's ``reason`` column stores, and
the ``reason`` label of the metrics. Its value is the stored, exported and labelled text,
so a value never changes: audit rows, usage rows, the REST API's JSON and the metrics'
label values stay byte-identical across releases. A new reason is a new member.

Each member carries what the code decides from it:

- ``category``: the family it belongs to (how the Settings UI groups it, what kind of
  counter it lands in);
- ``throttled``: a refusal by brute-force protection or a rate limit, counted in
  ``authgate_throttled_requests`` (``services/metrics.py``);
- ``event``: the audit event type it is always recorded under, where there is exactly
  one (an ``EventType`` value; ``services/audit/events.py``), else None.

It lives beside ``exceptions.py``, not in ``services/``: the pure ``security`` layer
raises errors with reasons too and may not import the services. Rows read back from the
database carry plain strings: ``Reason.lookup`` turns one back into a member, None for a
code this version does not know (an older release's, say), which callers still count and
show as text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NewType

# ALERT_FIRED's reason is the name of the alert's kind (``services/alerts/kinds.py``), a
# vocabulary of its own.
AlertKindName = NewType("AlertKindName", str)


class Category(StrEnum):
    """The family of a reason."""

    REQUEST = "request"  # an error's generic code: nothing more precise was known
    CREDENTIALS = "credentials"  # passwords and the accounts they belong to
    API_KEY = "api_key"
    TOKEN = "token"  # noqa: S105 - a category name, not a secret
    SESSION = "session"
    SECOND_FACTOR = "second_factor"
    PERMISSION = "permission"
    THROTTLE = "throttle"  # brute-force protection, rate limits, overload
    FORWARD_AUTH = "forward_auth"
    SERVICE_CREDENTIAL = "service_credential"
    ADMINISTRATION = "administration"  # users, keys, roles and rules being managed
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a category name
    AUDIT = "audit"  # the audit chain about itself


_AUTH_FAILURE: Final = "AUTH_FAILURE"
_KEY_FAILURE: Final = "API_KEY_ACCESS_FAILURE"
_KEY_SUCCESS: Final = "API_KEY_ACCESS_SUCCESS"
_TFA_FAILURE: Final = "TFA_FAILURE"
_RESET_REQUESTED: Final = "PASSWORD_RESET_REQUESTED"
_INTERNAL_REFUSED: Final = "INTERNAL_CALL_REFUSED"
_TAMPERED: Final = "AUDIT_CHAIN_TAMPERED"

_C = Category


class Reason(StrEnum):
    """Every reason code authgate records or reports (see the module's doc)."""

    _value_: str
    category: Category
    event: str | None
    throttled: bool

    def __new__(
        cls, value: str, category: Category, event: str | None = None, throttled: bool = False
    ) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.category = category
        member.event = event
        member.throttled = throttled
        return member

    @property
    def label(self) -> str:
        """The value of the metrics' ``reason`` label (the stored code itself)."""
        return self._value_

    @classmethod
    def lookup(cls, code: str | None) -> Reason | None:
        """The member for a stored code; None for None or a code this version lacks."""
        if code is None:
            return None
        return cls._value2member_map_.get(code)  # type: ignore[return-value]

    @classmethod
    def of(cls, code: str) -> Reason:
        """The member for ``code`` (an error's ``code``); ValueError if none has it."""
        member = cls.lookup(code)
        if member is None:
            raise ValueError(f"no reason {code!r}")
        return member

    @classmethod
    def authority_required(cls, authority: str) -> Reason:
        """The refusal of a caller who lacks ``authority`` (``role_admin_required``, ...)."""
        return cls._value2member_map_.get(  # type: ignore[return-value]
            f"{authority.lower()}_required", cls.ROLE_REQUIRED
        )

    # -- an error's generic code (``AuthgateError.code``), when no reason was given
    ERROR = "error", _C.REQUEST
    UNAUTHORIZED = "unauthorized", _C.REQUEST
    CREDENTIALS_MISSING = "credentials_missing", _C.REQUEST
    DUPLICATE_CREDENTIALS = "duplicate_credentials", _C.REQUEST
    BAD_CREDENTIALS = "bad_credentials", _C.CREDENTIALS
    INVALID_TOKEN = "invalid_token", _C.TOKEN
    TOKEN_EXPIRED = "token_expired", _C.TOKEN
    TOKEN_REVOKED = "token_revoked", _C.TOKEN
    INVALID_SECOND_FACTOR = "invalid_second_factor", _C.SECOND_FACTOR
    FORBIDDEN = "forbidden", _C.PERMISSION
    INTERNAL_KEY_REFUSED = "internal_key_refused", _C.SERVICE_CREDENTIAL
    INVALID_INTERNAL_KEY = "invalid_internal_key", _C.SERVICE_CREDENTIAL
    INVALID_API_KEY = "invalid_api_key", _C.API_KEY
    API_KEY_EXPIRED = "api_key_expired", _C.API_KEY
    API_KEY_OWNER_INACTIVE = "api_key_owner_inactive", _C.API_KEY
    API_KEY_SUSPENDED = "api_key_suspended", _C.API_KEY
    INSUFFICIENT_SCOPE = "insufficient_scope", _C.PERMISSION
    NOT_FOUND = "not_found", _C.REQUEST
    CONFLICT = "conflict", _C.REQUEST
    VALIDATION_FAILED = "validation_failed", _C.REQUEST
    AMBIGUOUS_UPSTREAM_REQUEST = "ambiguous_upstream_request", _C.FORWARD_AUTH
    AMBIGUOUS_UPSTREAM_PATH = "ambiguous_upstream_path", _C.FORWARD_AUTH
    TOO_MANY_ATTEMPTS = "too_many_attempts", _C.THROTTLE
    CLIENT_BLOCKED = "client_blocked", _C.THROTTLE
    OVERLOADED = "overloaded", _C.THROTTLE
    UNAVAILABLE = "unavailable", _C.REQUEST
    INVALID_REFRESH_TOKEN = "invalid_refresh_token", _C.SESSION
    RESET_KEY_INVALID = "reset_key_invalid", _C.PASSWORD_RESET
    RESET_KEY_EXPIRED = "reset_key_expired", _C.PASSWORD_RESET

    # -- passwords and accounts
    WRONG_PASSWORD = "wrong_password", _C.CREDENTIALS
    WRONG_CURRENT_PASSWORD = "wrong_current_password", _C.CREDENTIALS
    UNKNOWN_USER = "unknown_user", _C.CREDENTIALS
    USER_DEACTIVATED = "user_deactivated", _C.CREDENTIALS
    USER_DELETED = "user_deleted", _C.CREDENTIALS
    CORRUPT_PASSWORD_HASH = "corrupt_password_hash", _C.CREDENTIALS
    PASSWORD_CHANGED_MEANWHILE = "password_changed_meanwhile", _C.CREDENTIALS

    # -- brute-force protection and rate limits
    ACCOUNT_SLOWDOWN = "account_slowdown", _C.THROTTLE, None, True
    ACCOUNT_IP_BLOCKED = "account_ip_blocked", _C.THROTTLE, None, True
    IP_BLOCKED = "ip_blocked", _C.THROTTLE, None, True
    # More logins from one address at once than may wait for their turn.
    CONCURRENT_LOGINS = "concurrent_logins", _C.THROTTLE, None, True
    # A request refused because its address is blocked for sending bad keys ...
    IP_BLOCKED_FOR_KEYS = "ip_blocked_for_keys", _C.THROTTLE, None, True
    # ... and the block itself.
    TOO_MANY_INVALID_KEYS = "too_many_invalid_keys", _C.THROTTLE, "IP_BLOCKED"
    RATE_LIMITED = "rate_limited", _C.THROTTLE, _KEY_FAILURE, True
    HASHING_OVERLOADED = "hashing_overloaded", _C.THROTTLE
    SECOND_FACTOR_LOCKED = "second_factor_locked", _C.THROTTLE
    CODE_RESEND_TOO_SOON = "code_resend_too_soon", _C.THROTTLE

    # -- API keys
    MALFORMED_KEY = "malformed_key", _C.API_KEY
    BAD_CHECKSUM = "bad_checksum", _C.API_KEY
    UNKNOWN_KEY = "unknown_key", _C.API_KEY
    WRONG_SECRET = "wrong_secret", _C.API_KEY
    REVOKED_KEY = "revoked_key", _C.API_KEY
    EXPIRED_KEY = "expired_key", _C.API_KEY
    SUSPENDED_KEY = "suspended_key", _C.API_KEY
    ROTATED_SECRET_EXPIRED = "rotated_secret_expired", _C.API_KEY
    OWNER_INACTIVE = "owner_inactive", _C.API_KEY
    IP_NOT_ALLOWED = "ip_not_allowed", _C.API_KEY
    EMPTY_API_KEY = "empty_api_key", _C.API_KEY
    # An accepted key's use worth a record (API_KEY_ACCESS_SUCCESS).
    FIRST_USE = "first_use", _C.API_KEY, _KEY_SUCCESS
    AFTER_INACTIVITY = "after_inactivity", _C.API_KEY, _KEY_SUCCESS
    NEW_ADDRESS = "new_address", _C.API_KEY, _KEY_SUCCESS
    # Used from more addresses than are remembered per key: new ones go unrecorded a while.
    MANY_ADDRESSES = "many_addresses", _C.API_KEY, _KEY_SUCCESS

    # -- what a caller may do
    SCOPE_ADMIN = "scope_admin", _C.PERMISSION
    SCOPE_WRITE = "scope_write", _C.PERMISSION
    SCOPE_READ = "scope_read", _C.PERMISSION
    SCOPE_REQUIRED = "scope_required", _C.PERMISSION
    SESSION_REQUIRED = "session_required", _C.PERMISSION
    SECOND_FACTOR_REQUIRED = "second_factor_required", _C.PERMISSION
    ROLE_REQUIRED = "role_required", _C.PERMISSION
    ROLE_ADMIN_REQUIRED = "role_admin_required", _C.PERMISSION
    ROLE_ANALYST_REQUIRED = "role_analyst_required", _C.PERMISSION
    ROLE_VIEWER_REQUIRED = "role_viewer_required", _C.PERMISSION
    ROLE_USER_REQUIRED = "role_user_required", _C.PERMISSION
    PERMISSION_REQUIRED = "permission_required", _C.PERMISSION
    ROLE_CHANGE_DENIED = "role_change_denied", _C.PERMISSION
    INTERNAL_ONLY = "internal_only", _C.PERMISSION  # a user's credential on an internal route

    # -- bearer tokens
    EMPTY_BEARER = "empty_bearer", _C.TOKEN
    NOT_A_TOKEN = "not_a_token", _C.TOKEN
    MALFORMED_TOKEN = "malformed_token", _C.TOKEN
    TOKEN_TOO_LONG = "token_too_long", _C.TOKEN
    BAD_SIGNATURE = "bad_signature", _C.TOKEN
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed", _C.TOKEN
    UNKNOWN_SIGNING_KEY = "unknown_signing_key", _C.TOKEN
    INVALID_CLAIMS = "invalid_claims", _C.TOKEN
    WRONG_ISSUER_OR_AUDIENCE = "wrong_issuer_or_audience", _C.TOKEN
    TOKEN_NOT_YET_VALID = "token_not_yet_valid", _C.TOKEN
    TOKEN_LOGGED_OUT = "token_logged_out", _C.TOKEN
    TOKEN_USED = "token_used", _C.TOKEN
    SESSIONS_REVOKED = "sessions_revoked", _C.TOKEN
    SESSION_REVOKED = "session_revoked", _C.TOKEN

    # -- sessions (refresh-token families)
    MALFORMED_REFRESH_TOKEN = "malformed_refresh_token", _C.SESSION
    UNKNOWN_REFRESH_TOKEN = "unknown_refresh_token", _C.SESSION
    REFRESH_TOKEN_REUSED = "refresh_token_reused", _C.SESSION
    SESSION_ENDED = "session_ended", _C.SESSION
    SESSION_CAP = "session_cap", _C.SESSION
    SESSION_NOT_FOUND = "session_not_found", _C.SESSION
    REVOKED_BY_USER = "revoked_by_user", _C.SESSION
    LOGOUT = "logout", _C.SESSION
    SECOND_FACTOR = "second_factor", _C.SESSION  # sessions ended when it was turned on

    # -- the second factor
    WRONG_CODE = "wrong_code", _C.SECOND_FACTOR
    WRONG_ENROLMENT_CODE = "wrong_enrolment_code", _C.SECOND_FACTOR, _TFA_FAILURE
    NO_SECOND_FACTOR = "no_second_factor", _C.SECOND_FACTOR
    SECOND_FACTOR_ENABLED = "second_factor_enabled", _C.SECOND_FACTOR
    ENROLMENT_NOT_STARTED = "enrolment_not_started", _C.SECOND_FACTOR
    ENROLMENT_NOT_VERIFIED = "enrolment_not_verified", _C.SECOND_FACTOR
    DISABLED_BY_USER = "disabled_by_user", _C.SECOND_FACTOR, "TFA_DISABLED"
    RESET_BY_ADMIN = "reset_by_admin", _C.SECOND_FACTOR, "TFA_DISABLED"
    SECRET_UNREADABLE = "secret_unreadable", _C.SECOND_FACTOR, _TFA_FAILURE
    MAIL_NOT_SENT = "mail_not_sent", _C.SECOND_FACTOR
    BYPASS_HEADER = "bypass_header", _C.SECOND_FACTOR

    # -- forward-auth
    FORWARD_AUTH_DENIED = "forward_auth_denied", _C.FORWARD_AUTH
    DUPLICATE_UPSTREAM_HEADER = "duplicate_upstream_header", _C.FORWARD_AUTH
    CONFLICTING_UPSTREAM_HEADER = "conflicting_upstream_header", _C.FORWARD_AUTH
    METHOD_NOT_UPPER_CASE = "method_not_upper_case", _C.FORWARD_AUTH
    INVALID_METHOD_OVERRIDE = "invalid_method_override", _C.FORWARD_AUTH
    PATH_TOO_LONG = "path_too_long", _C.FORWARD_AUTH
    PATH_FRAGMENT = "path_fragment", _C.FORWARD_AUTH
    PATH_ENCODED_SEPARATOR = "path_encoded_separator", _C.FORWARD_AUTH
    PATH_DOUBLE_ENCODED = "path_double_encoded", _C.FORWARD_AUTH
    PATH_BACKSLASH = "path_backslash", _C.FORWARD_AUTH
    PATH_CONTROL_CHARACTER = "path_control_character", _C.FORWARD_AUTH
    PATH_NOT_BYTES = "path_not_bytes", _C.FORWARD_AUTH
    PATH_NOT_UTF8 = "path_not_utf8", _C.FORWARD_AUTH
    PATH_PARAMETER = "path_parameter", _C.FORWARD_AUTH
    PATH_DOT_SEGMENT = "path_dot_segment", _C.FORWARD_AUTH
    PATH_EMPTY_SEGMENT = "path_empty_segment", _C.FORWARD_AUTH
    PATH_TRAILING_DOT = "path_trailing_dot", _C.FORWARD_AUTH
    # Stored by versions that resolved dot segments (every ".." is refused now).
    PATH_ABOVE_ROOT = "path_above_root", _C.FORWARD_AUTH
    PATH_DOTS_ONLY_SEGMENT = "path_dots_only_segment", _C.FORWARD_AUTH

    # -- service credentials (``X-Internal-Key``)
    INTERNAL_KEY_MISSING = "internal_key_missing", _C.SERVICE_CREDENTIAL, _INTERNAL_REFUSED
    UNKNOWN_INTERNAL_KEY = "unknown_internal_key", _C.SERVICE_CREDENTIAL, _INTERNAL_REFUSED
    INTERNAL_KEY_REVOKED = "internal_key_revoked", _C.SERVICE_CREDENTIAL, _INTERNAL_REFUSED
    WRONG_INTERNAL_KEY = "wrong_internal_key", _C.SERVICE_CREDENTIAL, _INTERNAL_REFUSED
    ENDPOINT_NOT_ALLOWED = "endpoint_not_allowed", _C.SERVICE_CREDENTIAL, _INTERNAL_REFUSED
    SERVICE_CREDENTIAL_UNKNOWN = "service_credential_unknown", _C.SERVICE_CREDENTIAL
    SERVICE_CREDENTIAL_REVOKED = "service_credential_revoked", _C.SERVICE_CREDENTIAL
    SERVICE_CREDENTIAL_NAME_EXISTS = "service_credential_name_exists", _C.SERVICE_CREDENTIAL
    SERVICE_SECRET_IN_USE = "service_secret_in_use", _C.SERVICE_CREDENTIAL

    # -- administration: users, keys, roles, alert rules
    USER_NOT_FOUND = "user_not_found", _C.ADMINISTRATION
    USER_EXISTS = "user_exists", _C.ADMINISTRATION
    LOGIN_EXISTS = "login_exists", _C.ADMINISTRATION
    EMAIL_EXISTS = "email_exists", _C.ADMINISTRATION
    SELF_DELETE = "self_delete", _C.ADMINISTRATION
    SELF_DEACTIVATE = "self_deactivate", _C.ADMINISTRATION
    SELF_DEMOTE = "self_demote", _C.ADMINISTRATION
    LAST_ADMIN = "last_admin", _C.ADMINISTRATION
    ID_MISMATCH = "id_mismatch", _C.ADMINISTRATION
    LOGIN_MISMATCH = "login_mismatch", _C.ADMINISTRATION
    NO_MAIL = "no_mail", _C.ADMINISTRATION
    ROLE_NOT_FOUND = "role_not_found", _C.ADMINISTRATION
    ROLE_IMMUTABLE = "role_immutable", _C.ADMINISTRATION
    UNKNOWN_ROLE = "unknown_role", _C.ADMINISTRATION
    API_KEY_NOT_FOUND = "api_key_not_found", _C.ADMINISTRATION
    API_KEY_NOT_VISIBLE = "api_key_not_visible", _C.ADMINISTRATION
    API_KEY_REVOKED = "api_key_revoked", _C.ADMINISTRATION
    API_KEY_NAME_EXISTS = "api_key_name_exists", _C.ADMINISTRATION
    ALERT_RULE_NOT_FOUND = "alert_rule_not_found", _C.ADMINISTRATION
    ALERT_RULE_EXISTS = "alert_rule_exists", _C.ADMINISTRATION

    # -- password resets asked for (PASSWORD_RESET_REQUESTED)
    THROTTLED = "throttled", _C.PASSWORD_RESET, _RESET_REQUESTED
    UNKNOWN_EMAIL = "unknown_email", _C.PASSWORD_RESET, _RESET_REQUESTED
    MAIL_NOT_CONFIGURED = "mail_not_configured", _C.PASSWORD_RESET, _RESET_REQUESTED
    MAIL_FAILED = "mail_failed", _C.PASSWORD_RESET, _RESET_REQUESTED

    # -- the audit chain about itself
    HEAD_NOT_SIGNED = "head_not_signed", _C.AUDIT, _TAMPERED
    HEAD_SIGNATURE_MISMATCH = "head_signature_mismatch", _C.AUDIT, _TAMPERED
