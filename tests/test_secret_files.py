"""Every secret setting has a ``*_FILE`` twin, by one rule; a real server takes its
database URL, admin password and metrics token from files."""

from __future__ import annotations

import stat
import typing
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from authgate.settings import Settings
from authgate.settings_names import NESTED
from authgate.settings_secrets import SECRET_SETTINGS
from tests.processes import AuthgateServer

# A valid value of each secret (the keys are base64 of at least 32 or 64 bytes).
VALUES = {
    "database_url": "postgresql+asyncpg://authgate:pw@db.internal/authgate",
    "redis_url": "redis://:pw@cache.internal:6379/0",
    "jwt_secret": "a" * 88,
    "api_key_pepper": "b" * 44,
    "audit_key": "c" * 44,
    "tfa_key": "d" * 44,
    "alert_webhook_secret": "webhook signing secret",
    "alert_smtp_password": "smtp pass with spaces ",
    "metrics_token": "metrics-token-for-the-file-tests",
    "admin_password": "first-operator-passphrase",
}


def secret_file(directory: Path, name: str, content: str) -> Path:
    path = directory / name
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    return path


def nested_model(group: str) -> type[BaseModel]:
    return typing.cast(type[BaseModel], Settings.model_fields[group].annotation)


def setting(settings: Settings, name: str) -> object:
    """A setting by its flat name, wherever it lives."""
    if name in NESTED:
        group, field = NESTED[name]
        return getattr(getattr(settings, group), field)
    return getattr(settings, name)


def plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_every_secret_setting_is_covered() -> None:
    """Each SecretStr setting (and the database URL, which carries a password) has a
    *_FILE twin, and this test knows a value of each."""
    secret_fields = {
        name
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    } | {
        flat
        for flat, (group, name) in NESTED.items()
        if "SecretStr" in str(nested_model(group).model_fields[name].annotation)
    }
    assert secret_fields | {"database_url"} == set(SECRET_SETTINGS) == set(VALUES)
    for name in SECRET_SETTINGS:
        assert f"{name}_file" in Settings.model_fields


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_secret_read_from_its_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTHGATE_<NAME>_FILE: the file's content without its final line break (inner
    and trailing spaces are part of a password)."""
    path = secret_file(tmp_path, name, VALUES[name] + "\n")
    monkeypatch.setenv(f"AUTHGATE_{name.upper()}_FILE", str(path))
    settings = Settings(data_dir=tmp_path)
    assert plain(setting(settings, name)) == VALUES[name]
    assert VALUES[name] not in repr(settings) or name == "database_url"


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_value_and_file_together_are_refused(name: str, tmp_path: Path) -> None:
    path = secret_file(tmp_path, name, VALUES[name])
    both: dict[str, Any] = {name: VALUES[name], f"{name}_file": path}
    variable = f"AUTHGATE_{name.upper()}"
    # Named as the environment spells them (operator review: the TOML names were given).
    with pytest.raises(ValidationError, match=f"set {variable} or {variable}_FILE, not both"):
        Settings(**both)


def test_unreadable_or_empty_file_is_a_settings_error(tmp_path: Path) -> None:
    """The message names the variable and the file, never a content."""
    with pytest.raises(ValidationError, match="cannot read AUTHGATE_METRICS_TOKEN_FILE"):
        Settings(metrics_token_file=tmp_path / "missing")
    empty = secret_file(tmp_path, "empty", "\n")
    with pytest.raises(ValidationError, match=r"AUTHGATE_ADMIN_PASSWORD_FILE .* is empty"):
        Settings(admin_password_file=empty)


def test_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = secret_file(tmp_path, "token", VALUES["metrics_token"])
    path.chmod(0o644)
    Settings(metrics_token_file=path)
    assert f"{path} is readable by other users" in caplog.text
    assert VALUES["metrics_token"] not in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_server_takes_its_secrets_from_files(tmp_path: Path) -> None:
    """`authgate serve` with the database URL, the first admin's password and the
    metrics token in files (none in its environment): the admin logs in with the
    password from the file, the token from the file reads the metrics."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    database = f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"
    files = {
        "AUTHGATE_DATABASE_URL_FILE": secret_file(secrets, "database_url", database + "\n"),
        "AUTHGATE_ADMIN_PASSWORD_FILE": secret_file(secrets, "admin", VALUES["admin_password"]),
        "AUTHGATE_METRICS_TOKEN_FILE": secret_file(secrets, "metrics", VALUES["metrics_token"]),
    }
    server = AuthgateServer(tmp_path / "server", {k: str(v) for k, v in files.items()})
    try:
        server.wait_until_up()
        login = httpx2.post(
            f"{server.base_url}/api/authenticate",
            json={"username": "admin", "password": VALUES["admin_password"]},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        metrics = httpx2.get(
            f"{server.base_url}/management/prometheus",
            headers={"Authorization": f"Bearer {VALUES['metrics_token']}"},
            timeout=10,
        )
        assert metrics.status_code == 200, metrics.text
        wrong = httpx2.get(
            f"{server.base_url}/management/prometheus",
            headers={"Authorization": "Bearer not-the-token"},
            timeout=10,
        )
        assert wrong.status_code == 401
    finally:
        server.stop()
    assert (tmp_path / "elsewhere.db").is_file()  # the URL from the file was used
    log = server.log_path.read_text(encoding="utf-8")
    for secret in (VALUES["admin_password"], VALUES["metrics_token"]):
        assert secret not in log
