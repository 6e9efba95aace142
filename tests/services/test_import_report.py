"""The notice ``authgate import utmstack`` ends with about UTMStack's two-factor switch."""

from __future__ import annotations

from authgate.services.import_report import switch_notice
from authgate.services.utmstack_rows import TfaSwitch


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_the_v11_notice_warns_sites_that_use_v12s_ui() -> None:
    """Switch on, UTMStack v11: the notice names AUTHGATE_TFA_REQUIRED=all with enrolment,
    and says that v12's UI cannot enrol at login (its login answers 403, shown as
    "account deactivated"), naming the settings that fit such a site (the review: it
    recommended enrolment alone)."""
    for current in ({}, {"required": "all", "unenrolled": "enrol"}):
        notice = _one_line(switch_notice(TfaSwitch(True, "true", flow="v11"), **current))
        assert "AUTHGATE_TFA_REQUIRED=all (AUTHGATE_TFA_UNENROLLED=enrol, the default)" in notice
        assert "v12's UI has no forced enrolment" in notice
        assert '403 to a user without a factor, which v12\'s UI shows as "account deactivated"' in (
            notice
        )
        assert "there set AUTHGATE_TFA_UNENROLLED=email instead" in notice
        assert "or AUTHGATE_TFA_REQUIRED=none" in notice
    assert "; authgate is set so; but a site that uses UTMStack v12's UI" in _one_line(
        switch_notice(TfaSwitch(True, "true", flow="v11"), required="all", unenrolled="enrol")
    )


def test_the_v10_and_off_notices_need_no_warning() -> None:
    """E-mailed codes (v10's switch) and no second factor (switch off) work with v12's UI
    as they are: no warning there."""
    for switch in (TfaSwitch(True, "true", flow="v10"), TfaSwitch(False, "false")):
        assert "v12's UI" not in switch_notice(switch, required="none", unenrolled="enrol")
