"""How serious an alert is: one scale for alert rules, fired alerts, the API and the sinks
(each sink maps it to its own format's numbers, e.g. syslog's and CEF's)."""

from __future__ import annotations

from typing import Final, Literal, TypeGuard, get_args

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)  # least serious first


def is_severity(value: str) -> TypeGuard[Severity]:
    """Whether ``value`` names a severity (a stored value is checked, not trusted)."""
    return value in SEVERITIES
