"""The one vocabulary of reason codes (``authgate.reasons.Reason``): every member is
shown, labelled and recorded consistently, and the metrics decide from its attributes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

import authgate.app  # noqa: F401 - every module, so every error class, is imported
from authgate.exceptions import AuthgateError
from authgate.reasons import Category, Reason
from authgate.security.permissions import ROLE_ADMIN, ROLE_ANALYST, ROLE_USER, ROLE_VIEWER
from authgate.services.audit.events import EventType
from authgate.services.metrics import Metrics
from authgate.storage.audit_repository import AuditRow
from authgate.web.display import ALERT_KIND_TEXT, REASON_TEXT, reason_text

# Prometheus accepts any label value; ours are short snake_case codes, as stored.
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def _error_classes(root: type[AuthgateError] = AuthgateError) -> list[type[AuthgateError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_error_classes(sub))
    return found


def test_every_reason_has_a_text_a_metric_label_and_a_unique_value() -> None:
    values = [reason.value for reason in Reason]
    assert len(values) == len(set(values))
    assert set(REASON_TEXT) == set(Reason)
    for reason in Reason:
        assert REASON_TEXT[reason].strip(), reason
        assert reason_text(reason.value) == REASON_TEXT[reason]
        assert reason.label == reason.value == str(reason) == f"{reason}"
        assert _CODE.fullmatch(reason.label), reason
        assert len(reason.value) <= 32, "fits the narrowest column (sessions.revoked_reason)"
        assert isinstance(reason.category, Category)
        assert reason.event is None or reason.event in set(EventType), reason
        assert Reason.lookup(reason.value) is reason
    assert not set(Reason) & set(ALERT_KIND_TEXT), "alert kinds are a vocabulary of their own"


def test_only_the_refusals_of_brute_force_protection_and_rate_limits_are_throttled() -> None:
    throttled = {reason for reason in Reason if reason.throttled}
    assert throttled == {
        Reason.RATE_LIMITED,
        Reason.IP_BLOCKED_FOR_KEYS,
        Reason.IP_BLOCKED,
        Reason.ACCOUNT_IP_BLOCKED,
        Reason.ACCOUNT_SLOWDOWN,
        Reason.CONCURRENT_LOGINS,
    }
    assert all(reason.category is Category.THROTTLE for reason in throttled)


def test_every_error_code_is_a_reason() -> None:
    """An error raised without a reason carries its code as one (never a crash)."""
    for error_class in _error_classes():
        assert Reason.lookup(error_class.code) is not None, error_class
    assert AuthgateError().reason is Reason.ERROR


def test_a_missing_authority_names_its_reason() -> None:
    assert Reason.authority_required(ROLE_ADMIN) is Reason.ROLE_ADMIN_REQUIRED
    assert Reason.authority_required(ROLE_ANALYST) is Reason.ROLE_ANALYST_REQUIRED
    assert Reason.authority_required(ROLE_VIEWER) is Reason.ROLE_VIEWER_REQUIRED
    assert Reason.authority_required(ROLE_USER) is Reason.ROLE_USER_REQUIRED
    assert Reason.authority_required("ROLE_SOMETHING_NEW") is Reason.ROLE_REQUIRED


def test_stored_codes_are_looked_up_safely() -> None:
    assert Reason.lookup(None) is None
    assert Reason.lookup("a_code_of_an_older_release") is None
    assert Reason.lookup("RATE_LIMITED") is None  # values, not member names
    with pytest.raises(ValueError, match="no reason"):
        Reason.of("a_code_of_an_older_release")


def _row(event: EventType, reason: str | None) -> AuditRow:
    return AuditRow(
        occurred_at=datetime(2026, 12, 5, tzinfo=UTC),
        event_type=event.value,
        outcome="failure",
        actor_login=None,
        actor_user_id=None,
        api_key_id=None,
        api_key_name=None,
        client_ip=None,
        user_agent=None,
        request_path=None,
        reason=reason,
        correlation_id=None,
        details=None,
    )


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (EventType.API_KEY_ACCESS_FAILURE, Reason.RATE_LIMITED),
        (EventType.API_KEY_ACCESS_FAILURE, Reason.IP_BLOCKED_FOR_KEYS),
        (EventType.AUTH_FAILURE, Reason.IP_BLOCKED),
        (EventType.AUTH_FAILURE, Reason.ACCOUNT_IP_BLOCKED),
        (EventType.AUTH_FAILURE, Reason.ACCOUNT_SLOWDOWN),
    ],
)
def test_a_throttled_refusal_increments_the_throttled_counter(
    event: EventType, reason: Reason
) -> None:
    metrics = Metrics()
    metrics.on_audit(_row(event, reason))
    metrics.on_audit(_row(event, reason.value))  # as read back from the database: a str
    exposition = metrics.exposition().decode()
    assert f'authgate_throttled_requests_total{{reason="{reason.value}"}} 2.0' in exposition


def test_unknown_and_missing_reasons_are_counted_without_a_throttle() -> None:
    metrics = Metrics()
    metrics.on_audit(_row(EventType.API_KEY_ACCESS_FAILURE, "a_code_of_an_older_release"))
    metrics.on_audit(_row(EventType.AUTH_FAILURE, None))
    metrics.on_audit(_row(EventType.API_KEY_ACCESS_FAILURE, Reason.UNKNOWN_KEY))
    exposition = metrics.exposition().decode()
    assert (
        'authgate_api_key_requests_total{outcome="failure",reason="a_code_of_an_older_release"}'
        " 1.0" in exposition
    )
    assert 'authgate_logins_total{outcome="failure",reason="none"} 1.0' in exposition
    assert "authgate_throttled_requests_total{" not in exposition
