"""The server's logs (real `authgate serve` processes): JSON lines with the documented
fields, the request id in the access log, a case-insensitive level, and the first
admin's password only on a terminal, else in a private file the log points to."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import select
import stat
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.cli.log_config import RepeatsSummarized, log_config
from authgate.settings import Settings
from tests.processes import AUTHGATE, TEST_SERVER_ENVIRONMENT, AuthgateServer, free_port

LOGGED_PASSWORD_FILE = "initial-admin-password"


def json_records(server: AuthgateServer) -> list[dict[str, Any]]:
    """Every line of the server's output parsed as JSON (each must be)."""
    records = []
    for line in server.log_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        records.append(record)
    return records


def wait_for_record(server: AuthgateServer, **fields: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for record in json_records(server):
            if all(record.get(name) == value for name, value in fields.items()):
                return record
        time.sleep(0.1)
    pytest.fail(f"no record with {fields}\n{server.diagnostics()}")


def test_json_lines_with_request_fields(tmp_path: Path) -> None:
    """AUTHGATE_LOG_FORMAT=json (and a lower-case level): every output line is a JSON
    object with time (UTC ISO 8601), level, logger, message; the access record adds
    the request id (the caller's X-Request-ID), client, method, path, status, duration
    and principal id. The generated admin password is in a 0600 file, never logged."""
    # "debug": refused as invalid before the level became case-insensitive.
    server = AuthgateServer(
        tmp_path,
        {"AUTHGATE_LOG_FORMAT": "json", "AUTHGATE_LOG_LEVEL": "debug", "AUTHGATE_ACCESS_LOG": "1"},
    )
    try:
        server.wait_until_up()
        data_dir = tmp_path / "authgate-data"
        password_file = data_dir / LOGGED_PASSWORD_FILE
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text(encoding="utf-8").strip()
        login = httpx2.post(
            f"{server.base_url}/api/authenticate",
            json={"username": "admin", "password": password},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        token = login.json()["id_token"]
        account = httpx2.get(
            f"{server.base_url}/api/account?access_token=not-logged",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-4711"},
            timeout=10,
        )
        assert account.status_code == 200
        access = wait_for_record(server, logger="authgate.access", request_id="trace-4711")
    finally:
        server.stop()

    assert set(access) == {
        "time", "level", "logger", "message", "request_id", "client", "method", "path",
        "status", "duration_ms", "principal_id",
    }  # fmt: skip
    assert (access["level"], access["client"], access["method"]) == ("INFO", "127.0.0.1", "GET")
    assert (access["path"], access["status"]) == ("/api/account", 200)
    assert isinstance(access["duration_ms"], float)
    assert isinstance(access["principal_id"], int)
    assert "trace-4711" in access["message"]
    moment = datetime.fromisoformat(access["time"])
    assert moment.utcoffset() is not None
    assert moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert access["time"].endswith("Z")

    records = json_records(server)
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    pointer = next(r for r in records if "created user admin" in r["message"])
    assert str(password_file) in pointer["message"]
    output = server.log_path.read_text(encoding="utf-8")
    assert password not in output
    assert "not-logged" not in output  # the query string never reaches a log
    login_record = next(r for r in records if r.get("path") == "/api/authenticate")
    assert re.fullmatch(r"[0-9a-f]{16}", login_record["request_id"])  # generated


def test_text_access_line_carries_the_request_id(tmp_path: Path) -> None:
    """The default text format: the access line ends with the request id; a control
    character in the path stays escaped on one line."""
    server = AuthgateServer(tmp_path, {"AUTHGATE_ACCESS_LOG": "true"})
    try:
        server.wait_until_up()
        httpx2.get(f"{server.base_url}/api/ping", headers={"X-Request-ID": "abc.123"}, timeout=5)
        httpx2.get(f"{server.base_url}/api/x%0aforged", timeout=5)
        deadline = time.monotonic() + 20
        while "forged" not in server.log_path.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, server.diagnostics()
            time.sleep(0.1)
    finally:
        server.stop()
    lines = server.log_path.read_text(encoding="utf-8").splitlines()
    ping = r"authgate\.access: 127\.0\.0\.1 GET /api/ping 200 [\d.]+ms abc\.123$"
    assert any(re.search(ping, line) for line in lines), lines
    assert any(
        re.search(r"GET /api/x\\nforged 404 [\d.]+ms [0-9a-f]{16}$", line) for line in lines
    ), lines
    assert not any(line.startswith("forged") for line in lines)


def test_password_printed_on_a_terminal(tmp_path: Path) -> None:
    """With standard output on a terminal, the password is shown there once and no
    file is written."""
    primary, secondary = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    environment.update(TEST_SERVER_ENVIRONMENT)
    process = subprocess.Popen(
        [str(AUTHGATE), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.DEVNULL,
    )
    os.close(secondary)
    shown = b""
    try:
        deadline = time.monotonic() + 60
        while b"shown only this once" not in shown and time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if ready:
                try:
                    shown += os.read(primary, 4096)
                except OSError:
                    break  # the server exited
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.close(primary)
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode("utf-8", errors="replace"))
    assert "created user admin with password" in text, text
    password = text.split("created user admin with password", 1)[1].split()[0]
    assert len(password) >= 12
    assert not (tmp_path / "authgate-data" / LOGGED_PASSWORD_FILE).exists()


@pytest.mark.parametrize(
    ("given", "level"), [("debug", "DEBUG"), ("Info", "INFO"), ("warn", "WARNING")]
)
def test_log_level_is_case_insensitive(given: str, level: str) -> None:
    assert Settings(log_level=given).log_level == level


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log_format"):
        Settings(log_format="xml")


def _warning(message: str, created: float, *args: object) -> logging.LogRecord:
    logger = "authgate.http.refused"
    record = logging.LogRecord(logger, logging.WARNING, __file__, 1, message, args, None)
    record.created = created
    return record


def test_refusals_anyone_can_send_are_one_warning_per_interval() -> None:
    """The log review: 2,000 malformed requests were 2,000 warnings (uvicorn's "Invalid
    HTTP request received.", authgate's 431 and 408 lines). One a message per 10 s now;
    the next says how many were left out. Errors are never held back."""
    repeats = RepeatsSummarized(interval=10.0)
    template = "request head over %d bytes from %s: answered 431"
    assert repeats.filter(_warning(template, 100.0, 32768, "192.0.2.1"))
    for second in range(1, 10):
        assert not repeats.filter(_warning(template, 100.0 + second, 32768, "192.0.2.2"))
    assert repeats.filter(_warning("another message", 105.0))  # counted apart
    error = _warning(template, 105.0, 32768, "192.0.2.3")
    error.levelno = logging.ERROR
    assert repeats.filter(error)
    summary = _warning(template, 110.0, 32768, "192.0.2.4")
    assert repeats.filter(summary)
    assert summary.getMessage() == (
        "request head over 32768 bytes from 192.0.2.4: answered 431"
        " (9 more like it in the last 10 s)"
    )
    assert repeats.filter(_warning(template, 121.0, 32768, "192.0.2.5"))
    config = log_config("INFO", "text")
    for logger in ("uvicorn.error", "authgate.http.refused"):
        assert config["loggers"][logger]["filters"][-1] == "repeats"
    # uvicorn's report of a request cancelled by the stop's timeout is made a warning
    # first (tests/test_shutdown_timeout.py), then summarized like the others.
    assert config["loggers"]["uvicorn.error"]["filters"] == ["cancelled", "repeats"]
    # Not the connection limit's own reports (authgate.http): they count for themselves.
    assert "authgate.http" not in config["loggers"]
