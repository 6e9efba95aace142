"""The severity scale alert rules, fired alerts, the API and the sinks share."""

from __future__ import annotations

from authgate.services.alerts.formats import CEF_SEVERITY, SYSLOG_SEVERITY
from authgate.services.severity import SEVERITIES, is_severity


def test_the_scale_runs_from_least_to_most_serious() -> None:
    assert SEVERITIES == ("low", "medium", "high", "critical")


def test_only_the_four_names_are_severities() -> None:
    assert all(is_severity(name) for name in SEVERITIES)
    assert not is_severity("urgent")
    assert not is_severity("LOW")
    assert not is_severity("")


def test_every_sink_format_maps_every_severity() -> None:
    """Syslog numbers fall (0 is an emergency) and CEF numbers rise with seriousness."""
    assert set(SYSLOG_SEVERITY) == set(SEVERITIES) == set(CEF_SEVERITY)
    syslog = [SYSLOG_SEVERITY[name] for name in SEVERITIES]
    cef = [CEF_SEVERITY[name] for name in SEVERITIES]
    assert syslog == sorted(syslog, reverse=True)
    assert cef == sorted(cef)
