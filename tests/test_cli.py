"""The ``authgate`` command line: in-process with typer's CliRunner, and a real server process."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
import queue
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest
from typer.testing import CliRunner, Result

from authgate.cli import app
from authgate.cli import server as server_cli
from authgate.container import build_services
from authgate.exceptions import BadCredentials
from authgate.http_config import HttpConfig
from authgate.runtime import BackgroundWork
from authgate.security.second_factor import totp_code, totp_step
from authgate.services.password_hashing import HashingConfig
from authgate.services.reset_keys import issue_reset_key
from authgate.settings import CONFIG_FILE_VARIABLE, Settings
from authgate.storage import migrate as migrations
from authgate.wiring.credentials import load_signing_keys
from tests.conftest import test_settings

PASSWORD = "password-long-enough"
UTC_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
NEW_PASSWORD = "another-password-long-enough"
AUTHGATE = Path(sys.executable).with_name("authgate")


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the CLI at a fresh data dir with cheap Argon2, and undo what the CLI sets.
    The directory exists (as after `serve` or `--init`): commands refuse to create one."""
    directory = tmp_path / "data"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(directory))
    monkeypatch.setenv("AUTHGATE_ARGON2_MEMORY_KIB", "8")
    monkeypatch.setenv("AUTHGATE_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("COLUMNS", "250")  # rich tables must not truncate kids and dates
    monkeypatch.chdir(tmp_path)
    yield directory
    # `--config` stores the path in os.environ for worker processes; keep tests apart.
    os.environ.pop(CONFIG_FILE_VARIABLE, None)


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def assert_exits(result: Result, code: int) -> None:
    """The command ended with ``code`` by a deliberate exit: no uncaught exception."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in result.output


def create_user(login: str = "Bob", email: str = "b@example.com", *roles: str) -> Result:
    role_options = [option for role in roles for option in ("--role", role)]
    return invoke(
        "users",
        "create",
        "--login",
        login,
        "--email",
        email,
        *role_options,
        "--password-stdin",
        input=f"{PASSWORD}\n",
    )


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.lstrip().startswith("│")
    ]


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, password_hashing=HashingConfig(memory_kib=8, time_cost=1))


def authenticate(data_dir: Path, login: str, password: str) -> str:
    """Log in through the services; returns the login or raises BadCredentials."""

    async def run() -> str:
        services = build_services(settings_for(data_dir))
        work = BackgroundWork(services)
        try:
            await work.start(background=False)
            user = await services.accounts.authenticate(login, password)
            return user.login
        finally:
            await work.close()

    return asyncio.run(run())


# -- migrate ------------------------------------------------------------------------------


def test_migrate_prints_the_revision(data_dir: Path) -> None:
    """`authgate migrate` applies the migrations and prints the head revision."""
    result = invoke("migrate")
    assert_exits(result, 0)
    assert f"database schema at revision {migrations.head_revision()}" in result.stdout


def test_migrate_is_repeatable(data_dir: Path) -> None:
    """Running `authgate migrate` twice succeeds both times."""
    assert_exits(invoke("migrate"), 0)
    result = invoke("migrate")
    assert_exits(result, 0)
    assert migrations.head_revision() in result.stdout


def test_migrate_on_a_newer_schema_has_nothing_to_do(data_dir: Path) -> None:
    """An older version's `migrate` (an image rolled back) on a schema a newer version
    made says so and succeeds, as `serve` runs on it: compose starts authgate after it."""
    assert_exits(invoke("migrate"), 0)
    with sqlite3.connect(data_dir / "authgate.db") as database:
        database.execute("UPDATE alembic_version SET version_num = '0099_future'")
    result = invoke("migrate")
    assert_exits(result, 0)
    assert result.stdout == (
        "the database schema (0099_future) is newer than this version's "
        f"({migrations.head_revision()}): nothing to do\n"
    )


def test_migrate_only_migrates(data_dir: Path) -> None:
    """`migrate` generates no pepper, audit key, second-factor key nor signing keys: in
    compose it runs in a container of its own, where they would be lost (and unused)."""
    data_dir.rmdir()
    assert_exits(invoke("--init", "migrate"), 0)
    assert [path.name for path in data_dir.iterdir()] == ["authgate.db"]


def test_data_dir_created_by_cli_is_private(data_dir: Path) -> None:
    """A data dir created by a command (`--init`) is private (0700), as `serve` creates it."""
    data_dir.rmdir()
    assert_exits(invoke("--init", "migrate"), 0)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    assert mode & 0o077 == 0, f"data dir mode is {mode:o}; the database inside is exposed"


def test_an_open_data_dir_is_warned_about_once(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once per command, by the command: building the services (as serve, then each of
    its workers, does again) says nothing more; serve said it three times."""
    data_dir.chmod(0o755)
    assert_exits(invoke("users", "list"), 0)
    build_services(settings_for(data_dir))
    warnings = [r.getMessage() for r in caplog.records if "accessible" in r.getMessage()]
    assert warnings == [f"data directory {data_dir} is accessible by other users; chmod 700 it"]


# -- users --------------------------------------------------------------------------------


def test_create_user_lower_cases_login(data_dir: Path) -> None:
    """`users create --login Bob` creates user bob with the given e-mail and role."""
    result = create_user("Bob", "b@example.com", "ROLE_USER")
    assert_exits(result, 0)
    assert "created user bob (ROLE_USER)" in result.stdout

    listing = invoke("users", "list")
    assert_exits(listing, 0)
    rows = table_rows(listing.stdout)
    assert [row[1:5] for row in rows] == [["bob", "b@example.com", "ROLE_USER", "yes"]]
    assert authenticate(data_dir, "bob", PASSWORD) == "bob"


def test_create_user_with_both_roles(data_dir: Path) -> None:
    """Repeating --role gives the user every role named."""
    result = create_user("carol", "c@example.com", "ROLE_ADMIN", "ROLE_USER")
    assert_exits(result, 0)
    assert "created user carol (ROLE_ADMIN, ROLE_USER)" in result.stdout


def test_create_user_with_weak_password_fails(data_dir: Path) -> None:
    """A too-short password exits 1 with the policy's message and creates nobody."""
    result = invoke(
        "users",
        "create",
        "--login",
        "bob",
        "--email",
        "b@example.com",
        "--password-stdin",
        input="short\n",
    )
    assert_exits(result, 1)
    assert "Password must be at least 12 characters long." in result.stderr
    assert table_rows(invoke("users", "list").stdout) == []


def test_create_user_with_empty_stdin_fails(data_dir: Path) -> None:
    """--password-stdin with nothing on standard input exits 1 with a message."""
    result = invoke(
        "users", "create", "--login", "bob", "--email", "b@example.com", "--password-stdin"
    )
    assert_exits(result, 1)
    assert "no password on standard input" in result.stderr


def test_create_duplicate_login_fails(data_dir: Path) -> None:
    """A login that exists (in any case) is refused with exit code 1."""
    assert_exits(create_user("Bob", "b@example.com"), 0)
    result = create_user("BOB", "other@example.com")
    assert_exits(result, 1)
    assert "Login name already used" in result.stderr
    assert len(table_rows(invoke("users", "list").stdout)) == 1


def test_create_user_with_unknown_role_fails(data_dir: Path) -> None:
    """An unknown --role exits 1 naming the role, before asking for a password."""
    result = create_user("bob", "b@example.com", "ROLE_ROOT")
    assert_exits(result, 1)
    assert "unknown role ROLE_ROOT" in result.stderr
    assert table_rows(invoke("users", "list").stdout) == []


def test_set_password_replaces_the_old_one(data_dir: Path) -> None:
    """`users set-password` makes the new password work and the old one fail."""
    assert_exits(create_user(), 0)
    result = invoke("users", "set-password", "bob", "--password-stdin", input=f"{NEW_PASSWORD}\n")
    assert_exits(result, 0)
    assert "password of bob changed" in result.stdout

    with pytest.raises(BadCredentials) as raised:
        authenticate(data_dir, "bob", PASSWORD)
    assert raised.value.reason == "wrong_password"
    assert authenticate(data_dir, "bob", NEW_PASSWORD) == "bob"


def test_reset_link_prints_a_single_use_link(data_dir: Path) -> None:
    """`users reset-link LOGIN` prints the Settings UI link that sets the user's password
    (issue 13: the admin's way when no SMTP server is configured); the key works once."""
    assert_exits(create_user(), 0)
    result = invoke("users", "reset-link", "BOB")
    assert_exits(result, 0)
    assert re.search(r"valid until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ:", result.stdout)
    link = next(line for line in result.stdout.splitlines() if "/settings/reset?key=" in line)
    key = link.split("key=", 1)[1].strip()

    async def finish() -> None:
        services = build_services(settings_for(data_dir))
        work = BackgroundWork(services)
        try:
            await work.start(background=False)
            await services.password_resets.finish(key, NEW_PASSWORD)
        finally:
            await work.close()

    asyncio.run(finish())
    assert authenticate(data_dir, "bob", NEW_PASSWORD) == "bob"
    unknown = invoke("users", "reset-link", "nobody")
    assert_exits(unknown, 1)


def test_reset_link_notes_on_stderr_when_no_public_url_is_set(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link is built from the command's own settings: without AUTHGATE_PUBLIC_URL
    it names this host and port, which a note on stderr says (the command still
    succeeds, the link alone on stdout); with it, the link starts with it, no note."""
    assert_exits(create_user(), 0)
    monkeypatch.setenv("AUTHGATE_PORT", "9123")

    unset = invoke("users", "reset-link", "bob")
    assert_exits(unset, 0)
    assert "AUTHGATE_PUBLIC_URL is not set" in unset.stderr
    assert "http://127.0.0.1:9123" in unset.stderr
    assert "http://127.0.0.1:9123/settings/reset?key=" in unset.stdout
    assert "AUTHGATE_PUBLIC_URL" not in unset.stdout

    monkeypatch.setenv("AUTHGATE_PUBLIC_URL", "https://auth.example.com")
    public = invoke("users", "reset-link", "bob")
    assert_exits(public, 0)
    assert public.stderr == ""
    assert "https://auth.example.com/settings/reset?key=" in public.stdout

    # The page may be another one (UTMStack's): then no public URL is needed.
    monkeypatch.delenv("AUTHGATE_PUBLIC_URL")
    monkeypatch.setenv("AUTHGATE_RESET_PAGE_URL", "https://utm.example.com/reset/finish")
    utmstack = invoke("users", "reset-link", "bob")
    assert_exits(utmstack, 0)
    assert utmstack.stderr == ""
    assert "https://utm.example.com/reset/finish?key=" in utmstack.stdout


@pytest.mark.parametrize("common", ["password1234", "Password123!"])
def test_set_password_refuses_a_common_password(data_dir: Path, common: str) -> None:
    """`users set-password` applies the list of common passwords too (exit 1, why)."""
    assert_exits(create_user(), 0)
    result = invoke("users", "set-password", "bob", "--password-stdin", input=f"{common}\n")
    assert_exits(result, 1)
    assert "common and breached passwords" in result.stderr
    assert authenticate(data_dir, "bob", PASSWORD) == "bob"


def test_reset_tfa_removes_a_users_second_factor(data_dir: Path) -> None:
    """`users reset-tfa` (the operator's way out when an admin lost the phone); run
    again, it says there was none to remove (exit 0)."""
    assert_exits(create_user(), 0)

    async def enrol_and_check(enrol: bool) -> str | None:
        services = build_services(settings_for(data_dir))
        work = BackgroundWork(services)
        try:
            await work.start(background=False)
            user = await services.accounts.authenticate("bob", PASSWORD)
            if enrol:
                enrolment = await services.second_factor.start_enrolment(user, "TOTP")
                assert enrolment.secret is not None
                now = services.clock().timestamp()
                code = totp_code(enrolment.secret, totp_step(now))
                assert (await services.second_factor.verify_enrolment(user, "TOTP", code)).valid
                await services.second_factor.complete_enrolment(user, "TOTP", enable=True)
            return await services.second_factor.method_of(user.id)
        finally:
            await work.close()

    assert asyncio.run(enrol_and_check(True)) == "TOTP"
    result = invoke("users", "reset-tfa", "bob")
    assert_exits(result, 0)
    assert "second factor of bob removed" in result.stdout
    assert asyncio.run(enrol_and_check(False)) is None
    again = invoke("users", "reset-tfa", "bob")
    assert_exits(again, 0)
    assert "bob had no second factor" in again.stdout
    assert "removed" not in again.stdout
    assert_exits(invoke("users", "reset-tfa", "nobody"), 1)


def test_set_password_of_unknown_user_fails(data_dir: Path) -> None:
    """`users set-password` for a login that does not exist exits 1."""
    assert_exits(invoke("migrate"), 0)
    result = invoke("users", "set-password", "nobody", "--password-stdin", input=f"{PASSWORD}\n")
    assert_exits(result, 1)
    assert "error:" in result.stderr


def test_deactivate_stops_logins(data_dir: Path) -> None:
    """`users deactivate` makes even the right password fail, and the list says so."""
    assert_exits(create_user(), 0)
    result = invoke("users", "deactivate", "bob")
    assert_exits(result, 0)
    assert "user bob deactivated" in result.stdout

    with pytest.raises(BadCredentials) as raised:
        authenticate(data_dir, "bob", PASSWORD)
    assert raised.value.reason == "user_deactivated"
    assert [row[4] for row in table_rows(invoke("users", "list").stdout)] == ["no"]


def test_deactivate_suspends_the_keys(data_dir: Path) -> None:
    """`users deactivate` suspends the user's API keys like the REST API does."""
    assert_exits(create_user(), 0)
    assert_exits(invoke("keys", "create", "--user", "bob", "--name", "ci"), 0)
    assert_exits(invoke("users", "deactivate", "bob"), 0)
    rows = table_rows(invoke("keys", "list", "--user", "bob").stdout)
    assert [(row[2], row[4]) for row in rows] == [("ci", "suspended")]


# -- signing keys -------------------------------------------------------------------------


def test_signing_keys_rotate_retires_the_old_key(data_dir: Path) -> None:
    """`signing-keys list` shows one active key; after `rotate` a new one is active."""
    before = invoke("signing-keys", "list")
    assert_exits(before, 0)
    rows = table_rows(before.stdout)
    assert len(rows) == 1
    old_kid, algorithm, _, state = rows[0]
    assert (algorithm, state) == ("ES256", "active")

    rotated = invoke("signing-keys", "rotate")
    assert_exits(rotated, 0)
    assert "new active key" in rotated.stdout
    new_kid = rotated.stdout.split("new active key", 1)[1].split()[0]
    assert new_kid
    assert new_kid != old_kid
    assert f"{new_kid} (ES256);" in rotated.stdout
    assert "note:" not in rotated.stdout

    after = table_rows(invoke("signing-keys", "list").stdout)
    states = {row[0]: row[3] for row in after}
    assert set(states) == {old_kid, new_kid}
    assert states[new_kid] == "active"
    assert states[old_kid].startswith("retired ")


def test_signing_keys_rotate_in_two_steps_for_several_nodes(data_dir: Path) -> None:
    """`rotate --stage` adds a key that verifies but does not sign; the next `rotate`
    makes that very key active (the nodes have had the file in between)."""
    assert_exits(invoke("signing-keys", "list"), 0)
    staged = invoke("signing-keys", "rotate", "--stage")
    assert_exits(staged, 0)
    staged_kid = staged.stdout.split("staged key", 1)[1].split()[0]
    listed = {row[0]: row[3] for row in table_rows(invoke("signing-keys", "list").stdout)}
    assert listed[staged_kid] == "staged"
    assert sorted(listed.values()) == ["active", "staged"]

    rotated = invoke("signing-keys", "rotate")
    assert_exits(rotated, 0)
    assert f"new active key {staged_kid} (ES256) (the staged one);" in rotated.stdout
    after = {row[0]: row[3] for row in table_rows(invoke("signing-keys", "list").stdout)}
    assert after[staged_kid] == "active"
    [retired] = [state for state in after.values() if state != "active"]
    assert retired.startswith("retired ")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_signing_keys_rotate_keeps_the_files_owner(data_dir: Path) -> None:
    """Run as root against the servers' key file (a systemd DynamicUser's, a
    container's), `rotate` leaves it theirs: replaced as root's, the running servers kept
    the old key and the next start failed."""
    assert_exits(invoke("signing-keys", "list"), 0)  # creates the file
    key_file = data_dir / "signing-keys.json"
    os.chown(key_file, 65534, 65534)
    assert_exits(invoke("signing-keys", "rotate"), 0)
    owner = key_file.stat()
    assert (owner.st_uid, owner.st_gid, owner.st_mode & 0o777) == (65534, 65534, 0o600)


def test_signing_keys_rotate_refuses_a_file_it_cannot_give_back(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user than the file's owner (and not root) is told to run it as the
    owner; the file is left as it was."""
    assert_exits(invoke("signing-keys", "list"), 0)
    key_file = data_dir / "signing-keys.json"
    before = key_file.read_bytes()
    owner = key_file.stat().st_uid
    real_stat = Path.stat

    def foreign(path: Path, **kwargs: object) -> os.stat_result:
        result = real_stat(path, **kwargs)  # type: ignore[arg-type]
        if path == key_file:  # as if the servers' user owned it
            fields = list(result)
            fields[4] = owner + 1
            return os.stat_result(fields)
        return result

    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "stat", foreign)
    monkeypatch.setattr(os, "fchown", refuse)
    rotated = invoke("signing-keys", "rotate")
    assert_exits(rotated, 2)
    assert f"belongs to user id {owner + 1}" in rotated.output
    assert key_file.read_bytes() == before
    assert [p.name for p in data_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_signing_keys_rotate_says_when_the_algorithm_changes(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The algorithm comes from the shell's settings: a rotation without the servers'
    AUTHGATE_JWT_ALGORITHM would switch it silently."""
    assert_exits(invoke("signing-keys", "list"), 0)  # ES256, the default
    monkeypatch.setenv("AUTHGATE_JWT_ALGORITHM", "EdDSA")
    rotated = invoke("signing-keys", "rotate")
    assert_exits(rotated, 0)
    assert "(EdDSA);" in rotated.stdout
    assert "note: the active key was ES256, the new one is EdDSA" in rotated.stdout


def test_signing_keys_list_prints_whole_rows_with_utc_times(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the README promises of every table: in a pipe each key is one whole row (its
    kid uncut) however narrow the terminal, and times are ISO 8601 UTC to the second."""
    assert_exits(invoke("signing-keys", "list"), 0)
    rotated = invoke("signing-keys", "rotate")
    assert_exits(rotated, 0)
    new_kid = rotated.stdout.split("new active key", 1)[1].split()[0]
    monkeypatch.setenv("COLUMNS", "40")
    listed = invoke("signing-keys", "list")
    assert_exits(listed, 0)
    rows = table_rows(listed.stdout)
    assert len(rows) == 2
    assert new_kid in [row[0] for row in rows]
    for _, algorithm, created, state in rows:
        assert algorithm == "ES256"
        assert UTC_SECOND.fullmatch(created), created
        assert state == "active" or UTC_SECOND.fullmatch(state.removeprefix("retired ")), state


def test_cluster_status_prints_whole_rows_with_utc_times(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cluster status` lists a live node on one whole row however narrow the terminal,
    its start and last heartbeat in ISO 8601 UTC to the second."""
    assert_exits(invoke("migrate"), 0)
    monkeypatch.setenv("COLUMNS", "40")

    async def status_while_a_node_runs() -> Result:
        services = build_services(settings_for(data_dir))
        work = BackgroundWork(services)
        try:
            await work.start(background=False)
            assert services.cluster is not None
            await services.cluster.join()
            return await asyncio.to_thread(invoke, "cluster", "status")
        finally:
            await work.close()

    result = asyncio.run(status_while_a_node_runs())
    assert_exits(result, 0)
    [(node, _, started, last_seen, _, redis)] = table_rows(result.stdout)
    assert f"(pid {os.getpid()})" in node
    assert UTC_SECOND.fullmatch(started), started
    assert UTC_SECOND.fullmatch(last_seen), last_seen
    assert redis == "no"


def test_bad_config_path_is_a_configuration_error(data_dir: Path) -> None:
    """--config naming a missing file exits 2 with 'configuration error', no traceback."""
    result = invoke("users", "list", "--config", str(data_dir.parent / "missing.toml"))
    assert_exits(result, 2)
    assert "configuration error" in result.stderr
    assert "missing.toml" in result.stderr


def test_bad_config_variable_is_a_configuration_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTHGATE_CONFIG_FILE naming a missing file makes `migrate` exit 2."""
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(data_dir.parent / "missing.toml"))
    result = invoke("migrate")
    assert_exits(result, 2)
    assert "configuration error" in result.stderr


def test_config_file_option_is_used(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config points the command at the settings in that TOML file."""
    other = data_dir.parent / "other-data"
    config = data_dir.parent / "authgate.toml"
    config.write_text(f'data_dir = "{other}"\n', encoding="utf-8")
    monkeypatch.delenv("AUTHGATE_DATA_DIR")  # the file must decide
    data_dir.rmdir()
    result = invoke("--init", "migrate", "--config", str(config))
    assert_exits(result, 0)
    assert (other / "authgate.db").is_file()
    assert not data_dir.exists()


def test_serve_options_reach_the_links_the_workers_send(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --host --port` without a public URL: a worker, which builds its settings
    from the environment, puts the address served in the password-reset links it sends,
    not the configured one (the options win over AUTHGATE_HOST/AUTHGATE_PORT)."""
    monkeypatch.setenv("AUTHGATE_HOST", "127.0.0.1")
    monkeypatch.setenv("AUTHGATE_PORT", "8080")
    monkeypatch.delenv("AUTHGATE_PUBLIC_URL", raising=False)
    monkeypatch.setattr(logging.config, "dictConfig", lambda config: None)
    links: list[str] = []

    async def worker_link() -> str:
        services = build_services(Settings())  # as create_app_from_environment does
        try:
            return services.password_resets.link(issue_reset_key(datetime.now(UTC)))
        finally:
            await services.db.close()

    monkeypatch.setattr(
        server_cli, "_run_uvicorn", lambda settings: links.append(asyncio.run(worker_link()))
    )
    result = invoke("serve", "--host", "127.0.0.2", "--port", "18432")
    assert_exits(result, 0)
    assert len(links) == 1
    assert links[0].startswith("http://127.0.0.2:18432/settings/reset?key="), links


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """`serve` configures logging (handlers on sys.stderr, which CliRunner swaps for a
    stream it closes): put the loggers back as they were, or later tests of this worker
    would log into a closed stream."""
    names = ("authgate", "uvicorn", "uvicorn.error", "httpx2")
    saved = {
        name: (list(logger.handlers), logger.level, logger.propagate)
        for name in names
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restored_logging")
def test_a_refused_first_admin_password_names_its_variable(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy refuses AUTHGATE_ADMIN_PASSWORD: one line that says which setting."""
    monkeypatch.setenv("AUTHGATE_ADMIN_PASSWORD", "admin-admin-admin")
    monkeypatch.setattr(server_cli, "_run_uvicorn", lambda settings: None)
    result = invoke("serve")
    assert_exits(result, 2)
    assert "AUTHGATE_ADMIN_PASSWORD (or _FILE) is refused: " in result.output
    assert "admin-admin-admin" not in result.output


@pytest.mark.usefixtures("restored_logging")
def test_an_admin_password_given_after_the_first_start_is_said_to_be_unused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTHGATE_ADMIN_PASSWORD only sets the first admin's password: given on a later
    start (to change it, say), a warning says so instead of nothing."""
    monkeypatch.setattr(server_cli, "_run_uvicorn", lambda settings: None)
    monkeypatch.setenv("AUTHGATE_ADMIN_PASSWORD", "the-first-operator-passphrase-1")
    assert_exits(invoke("serve"), 0)
    monkeypatch.setenv("AUTHGATE_ADMIN_PASSWORD", "a-new-operator-passphrase-2")
    again = invoke("serve")
    assert_exits(again, 0)
    assert "AUTHGATE_ADMIN_PASSWORD (or _FILE) is set but users exist already" in again.output
    assert "a-new-operator-passphrase-2" not in again.output


@pytest.mark.usefixtures("restored_logging")
def test_start_up_warnings_follow_the_json_log_format(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In JSON mode every line of a start is a JSON object, the warnings logged before
    the server runs included (a data dir other users may enter): a log shipper parsing
    the stream line by line must not meet plain text."""
    data_dir.mkdir(exist_ok=True)
    data_dir.chmod(0o755)
    monkeypatch.setenv("AUTHGATE_LOG_FORMAT", "json")
    monkeypatch.setattr(server_cli, "_run_uvicorn", lambda settings: None)
    result = CliRunner().invoke(app, ["serve"])
    assert_exits(result, 0)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # a plain-text line fails here
    assert any("is accessible by other users" in record["message"] for record in records)


@pytest.mark.parametrize(
    ("host", "public_url", "warned"),
    [
        ("0.0.0.0", None, True),  # noqa: S104 - a setting checked, nothing bound
        ("::", None, True),
        ("0.0.0.0", "https://auth.example.com", False),  # noqa: S104
        ("127.0.0.1", None, False),
        ("auth.internal", None, False),
    ],
)
def test_a_wildcard_address_without_a_public_url_is_warned_about(
    tmp_path: Path, host: str, public_url: str | None, warned: bool
) -> None:
    """A container listens on 0.0.0.0: links naming it open nothing, so `serve` says
    to set AUTHGATE_PUBLIC_URL (scripts/compose-secrets writes it for compose)."""
    settings = Settings(data_dir=tmp_path, http=HttpConfig(host=host, public_url=public_url))
    warning = server_cli.unreachable_links_warning(settings)
    assert (warning is not None) == warned
    if warning is not None:
        assert "AUTHGATE_PUBLIC_URL" in warning
        assert settings.http.base_url in warning


def test_commands_other_than_serve_do_not_load_the_web_framework() -> None:
    """An operator's command (users, keys, audit, ...) loads the services, not FastAPI,
    uvicorn or the API's routers: ~0.4 s less of every command's start. Only `serve`
    needs them, and imports them when it runs."""
    script = (
        "import sys\n"
        "import authgate.cli\n"
        "web = ('fastapi', 'uvicorn', 'authgate.app', 'authgate.api.access')\n"
        "print(sorted(name for name in sys.modules if name.startswith(web)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- cluster ------------------------------------------------------------------------------


def test_cluster_init_prints_each_setting_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings to copy into every node's environment are whole lines in a pipe
    (80 columns), however long the directory's path."""
    monkeypatch.setenv("COLUMNS", "80")
    directory = tmp_path / "shared-secrets-of-the-authgate-cluster-in-production"
    result = invoke("cluster", "init", str(directory))
    assert_exits(result, 0)
    lines = result.stdout.splitlines()
    for name, file in [
        ("AUTHGATE_API_KEY_PEPPER_FILE", "api-key-pepper"),
        ("AUTHGATE_TFA_KEY_FILE", "tfa-key"),
        ("AUTHGATE_SIGNING_KEYS_FILE", "signing-keys.json"),
    ]:
        assert f"  {name}={(directory / file).resolve()}" in lines
    assert (
        "  AUTHGATE_DATABASE_URL=postgresql+asyncpg://...   AUTHGATE_REDIS_URL=redis://..." in lines
    )


# -- a real server process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """`authgate serve` in a subprocess; stdout lines are collected by a reader thread."""

    def __init__(self, workdir: Path, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
        env.update(
            {
                "AUTHGATE_DATA_DIR": str(data_dir),
                "AUTHGATE_ARGON2_MEMORY_KIB": "8",
                "AUTHGATE_ARGON2_TIME_COST": "1",
                "AUTHGATE_CHANGE_POLL_INTERVAL_SECONDS": "0.05",
            }
        )
        self.base_url = f"http://127.0.0.1:{port}"
        self._stderr: IO[bytes] = (workdir / f"server-{port}.stderr").open("wb")
        self._stderr_path = workdir / f"server-{port}.stderr"
        self.process = subprocess.Popen(
            [str(AUTHGATE), "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def diagnostics(self) -> str:
        self._stderr.flush()
        stderr = self._stderr_path.read_text(encoding="utf-8", errors="replace")
        return "stdout:\n" + "\n".join(self.lines) + "\nstderr:\n" + stderr[-4000:]

    def next_line_after(self, marker: str, timeout: float) -> str:
        """The stdout line following the first line containing ``marker``."""
        deadline = time.monotonic() + timeout
        seen_marker = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no line after {marker!r} within {timeout} s\n{self.diagnostics()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"server stdout closed before {marker!r}\n{self.diagnostics()}")
            if seen_marker:
                return line
            seen_marker = marker in line

    def wait_until_up(self, timeout: float = 20.0) -> None:
        """Poll GET /api/ping until it answers 200, failing if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}\n{self.diagnostics()}")
            try:
                if httpx2.get(f"{self.base_url}/api/ping", timeout=2.0).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not up within {timeout} s\n{self.diagnostics()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


def run_server(tmp_path: Path, data_dir: Path, use: Callable[[Server], Any]) -> Server:
    server = Server(tmp_path, data_dir, free_port())
    try:
        use(server)
    finally:
        server.stop()
    return server


def login(client: httpx2.Client, password: str) -> str:
    response = client.post("/api/authenticate", json={"username": "admin", "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["id_token"]
    assert token.count(".") == 2
    return token


@pytest.mark.slow
def test_serve_end_to_end(tmp_path: Path) -> None:
    """`authgate serve` creates admin once, serves logins and logouts, and keeps state."""
    data_dir = tmp_path / "data"
    password: dict[str, str] = {}

    def first_start(server: Server) -> None:
        server.wait_until_up()
        # Standard output is no terminal: the password is in a file, not in the output.
        password_file = data_dir / "initial-admin-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password["admin"] = password_file.read_text(encoding="utf-8").strip()
        assert len(password["admin"]) >= 12, server.diagnostics()
        with httpx2.Client(base_url=server.base_url, timeout=10) as client:
            token = login(client, password["admin"])
            bearer = {"Authorization": f"Bearer {token}"}

            account = client.get("/api/account", headers=bearer)
            assert account.status_code == 200, account.text
            assert account.json()["login"] == "admin"

            anonymous = client.get("/api/account")
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"].startswith("application/json")
            body = anonymous.json()
            assert body["status"] == 401
            assert body["error"] == "Unauthorized"
            assert body["path"] == "/api/account"

            logout = client.post("/api/logout", headers=bearer)
            assert logout.status_code == 204, logout.text
            after_logout = client.get("/api/account", headers=bearer)
            assert after_logout.status_code == 401, after_logout.text

    first = run_server(tmp_path, data_dir, first_start)
    assert "admin" in password

    keys = data_dir / "signing-keys.json"
    assert keys.is_file()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600

    def second_start(server: Server) -> None:
        server.wait_until_up()
        with httpx2.Client(base_url=server.base_url, timeout=10) as client:
            token = login(client, password["admin"])
            account = client.get("/api/account", headers={"Authorization": f"Bearer {token}"})
            assert account.status_code == 200, account.text

    second = run_server(tmp_path, data_dir, second_start)
    first_output = "\n".join(first.lines)
    second_output = "\n".join(second.lines)
    assert "authgate" in second_output  # the banner was read, so the check below means something
    assert "created user admin" not in second_output
    assert password["admin"] not in second_output
    first_log = first._stderr_path.read_text(encoding="utf-8")
    assert password["admin"] not in first_output + first_log
    assert f"its password is in {data_dir / 'initial-admin-password'}" in first_log


def test_a_server_says_when_the_configured_algorithm_is_not_the_active_keys(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Changing AUTHGATE_JWT_ALGORITHM on an existing install keeps the active key (and
    its algorithm) until a rotation: said at start, not silently ignored."""
    assert_exits(invoke("signing-keys", "list"), 0)  # an ES256 key file
    settings = test_settings(data_dir, jwt_algorithm="EdDSA")
    with caplog.at_level(logging.WARNING, logger="authgate.wiring.credentials"):
        _, ring = load_signing_keys(settings)
    assert ring.active.algorithm == "ES256"
    assert [record.getMessage() for record in caplog.records] == [
        "AUTHGATE_JWT_ALGORITHM is EdDSA but the active signing key is ES256, which keeps "
        "signing: `authgate signing-keys rotate` with this setting switches"
    ]


@pytest.mark.postgres
def test_migrate_on_postgresql_needs_no_data_dir(
    data_dir: Path, empty_postgres: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the README's PostgreSQL and compose sections run it: bare, from anywhere, with
    no data dir (nothing of the database lives there), and creating none."""
    data_dir.rmdir()
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", empty_postgres())
    result = invoke("migrate")
    assert_exits(result, 0)
    assert f"database schema at revision {migrations.head_revision()}" in result.stdout
    assert not data_dir.exists()


def test_a_data_dir_that_cannot_be_made_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A data dir under something that is not a directory (or a root-owned volume, a
    read-only mount): `serve` says which file and why, exit 2, no traceback; a data dir
    that is a file is said to be one."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    under = invoke("--data-dir", str(blocker / "data"), "serve")
    assert_exits(under, 2)
    assert "configuration error:" in under.output
    assert str(blocker / "data") in under.output
    assert "Traceback" not in under.output
    itself = invoke("--data-dir", str(blocker), "serve")
    assert_exits(itself, 2)
    assert f"the data directory {blocker} is not a directory" in itself.output


def test_an_address_serve_cannot_listen_on_is_one_line(data_dir: Path) -> None:
    """A port another process listens on, or a host that is no address here: one line
    and exit 2 before anything starts, not uvicorn's start-up, error and shutdown lines
    with exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = invoke("serve", "--host", "127.0.0.1", "--port", str(port))
    assert_exits(busy, 2)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in busy.output
    nowhere = invoke("serve", "--host", "999.1.1.1", "--port", "8080")
    assert_exits(nowhere, 2)
    assert "cannot listen on 999.1.1.1:8080:" in nowhere.output
    assert [path.name for path in data_dir.iterdir()] == []  # nothing was created


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_file_made_by_root_belongs_to_its_directorys_owner(data_dir: Path) -> None:
    """A first command run as root in the servers' data dir creates the signing keys:
    they are the directory owner's, not root's (which the servers could not read)."""
    os.chown(data_dir, 65534, 65534)
    assert_exits(invoke("signing-keys", "list"), 0)
    owner = (data_dir / "signing-keys.json").stat()
    assert (owner.st_uid, owner.st_gid) == (65534, 65534)


def test_rotate_never_writes_where_a_symlink_or_a_planted_name_points(
    data_dir: Path, tmp_path: Path
) -> None:
    """Root rotating the servers' key file: a symlink put in its place is replaced
    itself (root never writes where another user's link points), and a temporary name
    planted in the directory is not used (random, created exclusively)."""
    assert_exits(invoke("signing-keys", "list"), 0)
    key_file = data_dir / "signing-keys.json"
    target = tmp_path / "victim"
    target.write_text("root's file")
    real = data_dir / "real.json"
    key_file.rename(real)
    key_file.symlink_to(real)
    for pid in range(os.getpid() - 5, os.getpid() + 50):  # the old, guessable names
        (data_dir / f".signing-keys.json.{pid}.tmp").symlink_to(target)
    assert_exits(invoke("signing-keys", "rotate"), 0)
    assert not key_file.is_symlink()
    assert len(json.loads(key_file.read_text())["keys"]) == 2
    assert target.read_text() == "root's file"
    assert len(json.loads(real.read_text())["keys"]) == 1


def test_a_second_stage_while_a_key_is_staged_is_refused(data_dir: Path) -> None:
    """Another node's copy may have made the staged key active already: staging another
    in its place would make this copy refuse that node's tokens."""
    assert_exits(invoke("signing-keys", "list"), 0)
    first = invoke("signing-keys", "rotate", "--stage")
    assert_exits(first, 0)
    staged_kid = first.stdout.split("staged key", 1)[1].split()[0]
    again = invoke("signing-keys", "rotate", "--stage")
    assert_exits(again, 2)
    assert f"key {staged_kid} is staged already" in again.output
    listed = {row[0]: row[3] for row in table_rows(invoke("signing-keys", "list").stdout)}
    assert listed[staged_kid] == "staged"


def test_output_to_a_closed_pipe_is_no_database_error(data_dir: Path) -> None:
    """``authgate audit export | head -c 10``: the reader leaves, the next write fails
    with a broken pipe. That is a ``ConnectionError`` too, and was told as "cannot connect
    to the database at ...: Broken pipe" (exit 2, the upgrade review); now the command
    stops quietly, as other command-line tools do (click's exit 1 for a broken pipe)."""
    assert_exits(create_user(), 0)
    reading, writing = os.pipe()
    os.close(reading)  # the reader is gone before the first write
    try:
        done = subprocess.run(
            [str(AUTHGATE), "audit", "export", "--format", "json"],
            stdout=writing,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writing)
    assert done.returncode == 1
    assert b"database" not in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_key_ring_made_anew_for_a_database_with_users_is_warned_about(
    data_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup review: with the signing key file lost or moved, a start made a new
    ring and said nothing (its INFO line fell under start-up's WARNING level), and every
    user had to log in again without a word why. A ring made for a database that has
    users is now a warning; a first start's is not."""
    # Only caplog's handler: one an earlier test's `serve` left writes to a stream
    # CliRunner has closed since.
    authgate_logger = logging.getLogger("authgate")
    monkeypatch.setattr(authgate_logger, "handlers", [])
    monkeypatch.setattr(authgate_logger, "propagate", True)
    with caplog.at_level(logging.WARNING, logger="authgate.runtime"):
        assert_exits(invoke("users", "list"), 0)  # the first start: a new ring, no users
        assert_exits(create_user(), 0)
        assert_exits(invoke("users", "list"), 0)
    assert not [r for r in caplog.records if "signing key ring" in r.getMessage()]
    (data_dir / "signing-keys.json").unlink()
    with caplog.at_level(logging.WARNING, logger="authgate.runtime"):
        assert_exits(invoke("users", "list"), 0)
    warned = [r.getMessage() for r in caplog.records if "signing key ring" in r.getMessage()]
    assert warned == [
        f"a new signing key ring was created in {data_dir / 'signing-keys.json'}, but the"
        " database has users: every token signed before is refused (users log in again)."
        " If the file was lost or moved, stop and restore it"
    ]


def test_the_banner_hides_a_database_password_given_in_the_query() -> None:
    """The log review: libpq and asyncpg take a password in the URL's query too
    (``?password=``), and the start-up banner printed it; only ``user:pass@`` was hidden."""
    shown = server_cli._display_url(
        "postgresql+asyncpg://authgate:UserPartSecret@db.example:5432/authgate"
        "?password=QuerySecret&sslpassword=KeySecret&sslmode=require"
    )
    assert "Secret" not in shown
    assert "sslmode=require" in shown
    assert shown.startswith("postgresql+asyncpg://authgate:***@db.example:5432/authgate?")
