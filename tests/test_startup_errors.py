"""Start-up errors of the real `authgate` program: one line with a hint, exit code 2,
never a traceback; typos in AUTHGATE_* variables are warned about."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from authgate.exceptions import ConfigurationError
from authgate.settings import Settings
from authgate.wiring.infrastructure import redis_client
from tests.processes import AUTHGATE, TEST_SERVER_ENVIRONMENT, free_port

CONFIGURATION_ERROR = 2


def run_authgate(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, python: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``authgate ARGS`` (or ``python -c PYTHON ARGS``) with only the given AUTHGATE_*
    variables; a server that does start is a failure, so 60 s bounds it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    environment.update(TEST_SERVER_ENVIRONMENT)
    environment.update(env or {})
    environment["COLUMNS"] = "80"  # a narrow terminal must not wrap the one line
    command = [sys.executable, "-c", python, *args] if python else [str(AUTHGATE), *args]
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed start printed, after checking exit code 2 and that
    nothing else (a traceback) came with it."""
    output = result.stdout + result.stderr
    assert result.returncode == CONFIGURATION_ERROR, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("configuration error: ")
    return lines[0]


def closed_port_url() -> str:
    return f"postgresql+asyncpg://authgate:secret-word@127.0.0.1:{free_port()}/authgate"


def test_unreachable_postgresql(tmp_path: Path) -> None:
    """`serve` against a PostgreSQL that refuses connections: where, and what to check;
    the password is not shown."""
    line = one_line_error(
        run_authgate(tmp_path, "serve", env={"AUTHGATE_DATABASE_URL": closed_port_url()})
    )
    assert "cannot connect to the database at 127.0.0.1:" in line
    assert "connection refused" in line
    assert "AUTHGATE_DATABASE_URL" in line
    assert "secret-word" not in line


def test_unknown_database_host(tmp_path: Path) -> None:
    """A host name that does not resolve is named."""
    url = "postgresql+asyncpg://authgate@no-such-host.invalid/authgate"
    line = one_line_error(
        run_authgate(tmp_path, "--init", "migrate", env={"AUTHGATE_DATABASE_URL": url})
    )
    assert "cannot resolve the database host 'no-such-host.invalid'" in line


def test_a_url_parameter_asyncpg_refuses_is_named(tmp_path: Path) -> None:
    """libpq's sslmode with a value no one knows: refused before connecting, in one
    line naming it, without the password."""
    url = closed_port_url() + "?sslmode=bogus"
    line = one_line_error(
        run_authgate(tmp_path, "--init", "migrate", env={"AUTHGATE_DATABASE_URL": url})
    )
    assert line.startswith("configuration error: invalid AUTHGATE_DATABASE_URL: ")
    assert "sslmode" in line
    assert "verify-full" in line
    assert "secret-word" not in line


@pytest.mark.postgres
def test_missing_database(tmp_path: Path, postgres_schema: str) -> None:
    """A server without the named database: say which, and how to create it."""
    url = make_url(postgres_schema).set(database="authgate_no_such_database")
    line = one_line_error(
        run_authgate(
            tmp_path,
            "serve",
            env={"AUTHGATE_DATABASE_URL": url.render_as_string(hide_password=False)},
        )
    )
    assert "has no database 'authgate_no_such_database'" in line
    assert "createdb authgate_no_such_database" in line


def test_missing_asyncpg_names_the_extra(tmp_path: Path) -> None:
    """Without asyncpg installed (hidden from this process), the extra to install."""
    hide_asyncpg = (
        "import sys; sys.modules['asyncpg'] = None; "
        "from authgate.cli import main; sys.argv[0] = 'authgate'; main()"
    )
    result = run_authgate(
        tmp_path,
        "--init",
        "migrate",
        python=hide_asyncpg,
        env={"AUTHGATE_DATABASE_URL": "postgresql+asyncpg://authgate@127.0.0.1/authgate"},
    )
    assert "pip install 'authgate[postgres]'" in one_line_error(result)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("postgresql://a:b@db:5432/x", "postgresql+asyncpg://a:b@db:5432/x"),
        ("postgres://a@db/x", "postgresql+asyncpg://a@db/x"),
        ("postgresql://a@db/x?sslmode=require", "postgresql+asyncpg://a@db/x?ssl=require"),
        ("postgresql+asyncpg://a@db/x", "postgresql+asyncpg://a@db/x"),
        ("sqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_database_url_as_people_type_it(typed: str, meant: str) -> None:
    """`postgresql://` (no driver) is PostgreSQL through asyncpg; libpq's sslmode is
    asyncpg's ssl."""
    assert Settings(database_url=typed).effective_database_url == meant


@pytest.mark.postgres
def test_plain_postgresql_url_works(tmp_path: Path, postgres_schema: str) -> None:
    """`authgate migrate` with the `postgresql://` form connects (through asyncpg)."""
    url = make_url(postgres_schema).set(drivername="postgresql")
    plain = url.render_as_string(hide_password=False)
    assert plain.startswith("postgresql://")
    result = run_authgate(tmp_path, "--init", "migrate", env={"AUTHGATE_DATABASE_URL": plain})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database schema at revision" in result.stdout


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "authgate.toml"
    config.write_text('token_ttl_seconds = 1800\nport = \npublic_url = "x"\n', encoding="utf-8")
    line = one_line_error(run_authgate(tmp_path, "serve", "--config", str(config)))
    assert f"config file {config}: TOML syntax error" in line
    assert "(at line 2, column 8)" in line


def test_invalid_value_names_the_variable(tmp_path: Path) -> None:
    """pydantic's `port: Input should be a valid integer` becomes AUTHGATE_PORT."""
    line = one_line_error(run_authgate(tmp_path, "serve", env={"AUTHGATE_PORT": "eighty"}))
    assert line.startswith("configuration error: invalid AUTHGATE_PORT: ")
    assert "valid integer" in line


def test_invalid_value_in_the_file_names_the_key(tmp_path: Path) -> None:
    """From the config file: its key and the file; an unknown key gets a suggestion."""
    config = tmp_path / "authgate.toml"
    config.write_text('port = "eighty"\ntoken_ttl = 60\n', encoding="utf-8")
    line = one_line_error(run_authgate(tmp_path, "serve", "--config", str(config)))
    assert f"invalid port in {config}: " in line
    assert f"unknown setting 'token_ttl' in {config}; did you mean token_ttl_seconds?" in line


@pytest.mark.parametrize(
    "rule",
    [
        '[[alert_rules]]\nname = "x"\nkind = "nope"\nwindow_seconds = 60\nseverity = "low"\n',
        '[alerts]\nrules = [{name = "x", kind = "failed_logins_per_ip", threshold = 0, '
        'window_seconds = 60, severity = "low"}]\n',
    ],
    ids=["unknown-kind", "zero-threshold"],
)
def test_a_bad_alert_rule_in_the_file_is_one_line_before_the_server_starts(
    tmp_path: Path, rule: str
) -> None:
    """The README-driven review: it was a traceback from uvicorn's start-up, exit 3."""
    config = tmp_path / "authgate.toml"
    config.write_text(rule, encoding="utf-8")
    line = one_line_error(run_authgate(tmp_path, "serve", "--config", str(config)))
    assert line.startswith("configuration error: alert rule 'x': ")


def test_unknown_variable_is_warned_with_a_suggestion(tmp_path: Path) -> None:
    """A typo is no longer silently ignored; the command still runs. The client's own
    variables (AUTHGATE_URL) are not unknown."""
    result = run_authgate(
        tmp_path,
        "--init",
        "users",
        "list",
        env={
            "AUTHGATE_DATA_DIR": str(tmp_path / "data"),
            "AUTHGATE_TOKEN_TTL": "60",
            "AUTHGATE_URL": "http://127.0.0.1:8080",
        },
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: unknown variable AUTHGATE_TOKEN_TTL is ignored; "
        "did you mean AUTHGATE_TOKEN_TTL_SECONDS?"
    ]


@pytest.mark.parametrize("url", ["http://user:s3cret-pw@cache:6379/0", "cache:6379"])
def test_a_redis_url_of_another_scheme_is_one_line_without_its_password(url: str) -> None:
    """Not a traceback from deep in the start-up: the variable named, the password not."""
    with pytest.raises(ConfigurationError) as refused:
        redis_client(url)
    message = str(refused.value)
    assert message.startswith("AUTHGATE_REDIS_URL is not a Redis URL")
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    ("variable", "command"),
    [
        ("AUTHGATE_FORWARD_AUTH_RULES", ("serve",)),
        ("AUTHGATE_ALERT_RULES", ("users", "list")),
        ("AUTHGATE_LOGIN", ("users", "list")),  # a group's own name, decoded by pydantic
    ],
)
def test_a_variable_that_is_not_json_is_named(
    tmp_path: Path, variable: str, command: tuple[str, ...]
) -> None:
    """A JSON setting that is not JSON: the variable, not pydantic's field and source
    under a traceback."""
    line = one_line_error(run_authgate(tmp_path, "--init", *command, env={variable: "not json"}))
    assert line.startswith(f"configuration error: invalid {variable}: not ")
    assert "line 1 column 1" in line
