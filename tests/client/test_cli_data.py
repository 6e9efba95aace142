"""``authgate-client call --data``: a body that cannot be read or is not JSON is a usage
error (exit 2) in one line naming where it came from, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.test_cli import assert_exits, run

# Nothing listens there: a command that got as far as sending would exit 8.
URL = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _api_key(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_API_KEY", "agk_x_not-a-real-key-but-long-enough")
    monkeypatch.setenv("COLUMNS", "250")  # the temp paths are long: one line unwrapped


def call_with(data: str, input: str | None = None) -> tuple[int, str]:
    result = run("--url", URL, "call", "POST", "/api/api-keys", "--data", data, input=input)
    assert_exits(result, 2)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.exit_code, result.stderr


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.json"
    _, stderr = call_with(f"@{missing}")
    assert "nonexistent.json" in stderr
    assert "No such file" in stderr


def test_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    _, stderr = call_with(f"@{tmp_path}")
    assert str(tmp_path.name) in stderr


def test_a_file_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    body = tmp_path / "key.json"
    body.write_text("{name: 1}", encoding="utf-8")
    _, stderr = call_with(f"@{body}")
    assert "key.json" in stderr
    assert "not JSON" in stderr


def test_a_file_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    body = tmp_path / "latin1.json"
    body.write_bytes(b'{"name": "caf\xe9"}')
    _, stderr = call_with(f"@{body}")
    assert "latin1.json" in stderr
    assert "UTF-8" in stderr


def test_standard_input_that_is_not_json() -> None:
    _, stderr = call_with("-", input="nope")
    assert "standard input" in stderr
