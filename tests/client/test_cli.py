"""``authgate-client`` end to end against ``authgate serve`` on loopback: typer's runner
in-process, and real subprocesses."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from authgate.client import (
    ApiKeyCredentials,
    AuthenticationError,
    Client,
    ClientConfig,
    PasswordCredentials,
    TokenCredentials,
)
from authgate.client._cli import app
from tests.client import utmstack_fake as utm
from tests.client.servers import (
    ADMIN_PASSWORD,
    AUTHGATE_CLIENT,
    AuthgateServer,
    clean_environment,
    serve_asgi,
)
from tests.client.support import USER_PASSWORD, unique

pytestmark = pytest.mark.slow


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def assert_exits(result: Result, code: int) -> None:
    """The command ended with ``code`` by a deliberate exit, never a traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in result.output


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.lstrip().startswith("│")
    ]


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich tables must not wrap the cells read below


@pytest.fixture
def logged_in(authgate_server: AuthgateServer, fresh_user: str, config_dir: Path) -> str:
    """``authgate-client login`` done for a fresh user; returns the login."""
    result = run(
        "--url", authgate_server.url, "login", "-u", fresh_user, "--password-stdin",
        input=f"{USER_PASSWORD}\n",
    )  # fmt: skip
    assert_exits(result, 0)
    return fresh_user


@pytest.fixture
def api_key(authgate_server: AuthgateServer, fresh_user: str) -> str:
    """An API key of a fresh user."""
    config = ClientConfig(authgate_server.url, PasswordCredentials(fresh_user, USER_PASSWORD))
    with Client(config) as client:
        created = client.create_api_key(
            unique("env-key"), expires_at=datetime.now(UTC) + timedelta(days=1)
        )
    return created.key


# -- help, completion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["login"],
        ["logout"],
        ["whoami"],
        ["call"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "show"],
        ["keys", "rotate"],
        ["keys", "revoke"],
        ["keys", "usage"],
        ["audit"],
        ["audit", "tail"],
        ["sessions"],
        ["sessions", "list"],
        ["sessions", "revoke"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    """--help works everywhere and says what the command does."""
    result = run(*command, "--help")
    assert_exits(result, 0)
    assert "Usage:" in result.stdout
    assert len(result.stdout.strip().splitlines()) > 3


def test_root_help_documents_exit_codes() -> None:
    """The top-level help lists the exit codes."""
    result = run("--help")
    text = " ".join(result.stdout.split())
    for fragment in ("3 authentication", "5 not found", "8 no answer"):
        assert fragment in text


def test_shell_completion_script_is_available() -> None:
    """--show-completion prints a completion script for the shell."""
    result = subprocess.run(
        [str(AUTHGATE_CLIENT), "--show-completion", "bash"],
        # Typer's switch to name the shell instead of detecting it from the parent
        # processes (which differ between a terminal, CI and a background job).
        env={**clean_environment(), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "_AUTHGATE_CLIENT_COMPLETE" in result.stdout


# -- configuration errors --------------------------------------------------------------------


@pytest.mark.usefixtures("config_dir")
def test_no_server_is_a_usage_error() -> None:
    """Without --url, AUTHGATE_URL or an earlier login: exit 2 naming the fix."""
    result = run("whoami")
    assert_exits(result, 2)
    assert "--url" in result.stderr


@pytest.mark.usefixtures("config_dir")
def test_not_logged_in_is_an_authentication_error(authgate_server: AuthgateServer) -> None:
    """A server but no credentials: exit 3 and how to log in."""
    result = run("--url", authgate_server.url, "whoami")
    assert_exits(result, 3)
    assert "authgate-client login" in result.stderr


@pytest.mark.usefixtures("config_dir")
def test_wrong_password_exits_3(authgate_server: AuthgateServer, fresh_user: str) -> None:
    """A refused login exits 3 and stores nothing."""
    result = run(
        "--url", authgate_server.url, "login", "-u", fresh_user, "--password-stdin",
        input="not-the-password\n",
    )  # fmt: skip
    assert_exits(result, 3)
    assert "401" in result.stderr


# -- login, whoami, logout -------------------------------------------------------------------


def test_login_stores_the_token_in_a_private_file(
    authgate_server: AuthgateServer, logged_in: str, config_dir: Path
) -> None:
    """Without a keyring the token goes to a 0600 file, and is never printed."""
    tokens = config_dir / "tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    token = json.loads(tokens.read_text())[authgate_server.url]
    assert token.count(".") == 2
    result = run("whoami")
    assert_exits(result, 0)
    assert token not in result.output
    record = dict(row[:2] for row in table_rows(result.stdout))
    assert record["login"] == logged_in
    assert record["server"] == authgate_server.url
    assert "stored by" in record["authenticated by"]


@pytest.mark.usefixtures("config_dir")
def test_login_prompts_for_the_password_without_echo(
    authgate_server: AuthgateServer, fresh_user: str
) -> None:
    """Without --password-stdin the password is prompted for and not echoed."""
    result = run(
        "--url", authgate_server.url, "login", "-u", fresh_user, input=f"{USER_PASSWORD}\n"
    )
    assert_exits(result, 0)
    assert "Password" in result.output
    assert USER_PASSWORD not in result.output
    assert f"as {fresh_user}" in result.stderr


def test_logout_revokes_and_forgets_the_token(
    authgate_server: AuthgateServer, logged_in: str, config_dir: Path
) -> None:
    """logout revokes the token on the server and removes it from the file."""
    token = json.loads((config_dir / "tokens.json").read_text())[authgate_server.url]
    assert_exits(run("logout"), 0)
    assert json.loads((config_dir / "tokens.json").read_text()) == {}
    config = ClientConfig(authgate_server.url, TokenCredentials(token))
    with Client(config) as client, pytest.raises(AuthenticationError):
        client.account()
    assert_exits(run("whoami"), 3)


def test_whoami_json_with_an_api_key(
    authgate_server: AuthgateServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTHGATE_URL + AUTHGATE_API_KEY: whoami -o json prints the account, not the key."""
    monkeypatch.setenv("AUTHGATE_URL", authgate_server.url)
    monkeypatch.setenv("AUTHGATE_API_KEY", api_key)
    result = run("-o", "json", "whoami")
    assert_exits(result, 0)
    account = json.loads(result.stdout)
    assert account["authorities"] == ["ROLE_USER"]
    assert api_key not in result.output


# -- keys ------------------------------------------------------------------------------------


def test_keys_create_prints_the_key_once_on_stdout(
    authgate_server: AuthgateServer, logged_in: str
) -> None:
    """keys create: stdout is the key alone (for $(...)); the key works."""
    name = unique("ci")
    result = run(
        "keys", "create", "--name", name, "--expires-in", "30d",
        "--allow-ip", "127.0.0.1", "--allow-ip", "10.0.0.0/8", "--scope", "read",
    )  # fmt: skip
    assert_exits(result, 0)
    key = result.stdout.strip()
    assert key.startswith("agk_")
    assert "only time" in result.stderr
    with Client(ClientConfig(authgate_server.url, ApiKeyCredentials(key))) as client:
        assert client.account().login == logged_in

    deadline = time.monotonic() + 10
    while True:  # last-used times are written in batches (every 0.1 s here)
        listing = run("keys", "list")
        assert_exits(listing, 0)
        rows = {row[1]: row for row in table_rows(listing.stdout)}
        if rows[name][6] != "never" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rows[name][3] == "active"
    assert rows[name][4] == "127.0.0.1, 10.0.0.0/8"
    assert rows[name][2].startswith("agk_")
    assert rows[name][6] != "never"  # just used
    assert key not in listing.output


@pytest.mark.usefixtures("logged_in")
def test_keys_create_json_holds_the_key_and_its_fields() -> None:
    """--output json prints the created key with every field, the key included."""
    result = run("-o", "json", "keys", "create", "--name", unique("json"), "--expires-in", "7d")
    assert_exits(result, 0)
    created = json.loads(result.stdout)
    assert created["key"].startswith("agk_")
    assert created["status"] == "active"
    assert sorted(created["scopes"]) == ["read", "write"]
    expires = datetime.fromisoformat(created["expiresAt"])
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)


@pytest.mark.usefixtures("logged_in")
def test_times_are_printed_in_the_rest_apis_form() -> None:
    """-o json prints a key's times as the REST API's JSON has them (UTC with Z, not
    +00:00), and tables to the second in the same form."""
    created = json.loads(run("-o", "json", "keys", "create", "--name", unique("when")).stdout)
    key_id = str(created["id"])

    shown = json.loads(run("-o", "json", "keys", "show", key_id).stdout)
    rest = json.loads(run("call", "GET", f"/api/api-keys/{key_id}").stdout)
    for field in ("createdAt", "expiresAt", "generatedAt"):
        assert shown[field] == rest[field], field
        assert shown[field].endswith("Z"), shown[field]
    rows = dict(row[:2] for row in table_rows(run("keys", "show", key_id).stdout))
    assert rows["created"] == rest["createdAt"][:19] + "Z"


@pytest.mark.usefixtures("logged_in")
def test_keys_list_reads_every_page() -> None:
    """With a page size of 1, every key is still listed (several requests)."""
    names = {unique("paged") for _ in range(3)}
    for name in names:
        assert_exits(run("keys", "create", "--name", name), 0)
    result = run("-o", "json", "keys", "list", "--page-size", "1")
    assert_exits(result, 0)
    assert {key["name"] for key in json.loads(result.stdout)} == names


def test_keys_show_rotate_revoke_and_usage(authgate_server: AuthgateServer, logged_in: str) -> None:
    """show, rotate --grace (old key keeps working), usage, then revoke."""
    created = json.loads(run("-o", "json", "keys", "create", "--name", unique("life")).stdout)
    key_id = str(created["id"])

    shown = run("keys", "show", key_id)
    assert_exits(shown, 0)
    assert dict(row[:2] for row in table_rows(shown.stdout))["status"] == "active"

    rotated = run("keys", "rotate", key_id, "--grace", "1h")
    assert_exits(rotated, 0)
    new_key = rotated.stdout.strip()
    assert new_key.startswith("agk_")
    assert new_key != created["key"]
    assert "keeps working for 1h" in rotated.stderr
    for key in (created["key"], new_key):
        with Client(ClientConfig(authgate_server.url, ApiKeyCredentials(key))) as client:
            client.account()

    deadline = time.monotonic() + 10
    while True:  # the server writes usage records in batches (every 0.1 s here)
        usage = run("-o", "json", "keys", "usage", key_id)
        assert_exits(usage, 0)
        records = json.loads(usage.stdout)
        if len(records) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(r["requestMethod"], r["endpoint"], r["responseCode"]) for r in records] == [
        ("GET", "/api/account", 200)
    ] * 2

    assert_exits(run("keys", "revoke", key_id), 0)
    revoked = Client(ClientConfig(authgate_server.url, ApiKeyCredentials(new_key)))
    with revoked, pytest.raises(AuthenticationError):
        revoked.account()
    assert_exits(run("keys", "show", "999999"), 5)


@pytest.mark.usefixtures("logged_in")
def test_bad_key_input_exits_1_or_2() -> None:
    """A bad duration is a usage error (2); a bad address is refused by the server (1)."""
    assert_exits(run("keys", "create", "--name", "x", "--expires-in", "soon"), 2)
    result = run("keys", "create", "--name", unique("bad"), "--allow-ip", "10.0.0.1/33")
    assert_exits(result, 1)
    assert "allowedIp[0]" in result.stderr
    assert "Invalid CIDR format" in result.stderr


# -- call ------------------------------------------------------------------------------------


def test_call_prints_json_and_exits_by_status(
    authgate_server: AuthgateServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """call GET /api/account prints the JSON (exit 0); a 404 prints the error body (exit 5)."""
    monkeypatch.setenv("AUTHGATE_URL", authgate_server.url)
    monkeypatch.setenv("AUTHGATE_API_KEY", api_key)
    ok = run("call", "GET", "/api/account")
    assert_exits(ok, 0)
    assert json.loads(ok.stdout)["authorities"] == ["ROLE_USER"]

    missing = run("call", "GET", "/api/api-keys/999999")
    assert_exits(missing, 5)
    assert json.loads(missing.stdout)["code"] == "not_found"

    forbidden = run("call", "GET", "/api/users")
    assert_exits(forbidden, 4)

    with_params = run("call", "GET", "/api/api-keys", "--param", "size=1")
    assert_exits(with_params, 0)
    assert len(json.loads(with_params.stdout)) == 1


def test_call_sends_a_json_body(
    authgate_server: AuthgateServer, logged_in: str, tmp_path: Path
) -> None:
    """--data sends JSON, inline or from a file; bad JSON is a usage error."""
    body = tmp_path / "key.json"
    expires = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    body.write_text(json.dumps({"name": unique("called"), "expiresAt": expires}))
    created = run("call", "POST", "/api/api-keys", "--data", f"@{body}")
    assert_exits(created, 0)
    assert json.loads(created.stdout)["key"].startswith("agk_")
    assert_exits(run("call", "POST", "/api/api-keys", "--data", "{not json"), 2)
    conflict = run("call", "POST", "/api/api-keys", "--data", f"@{body}")
    assert_exits(conflict, 1)
    assert "already exists" in conflict.stderr


# -- audit -----------------------------------------------------------------------------------


def test_audit_tail_for_admins_only(
    authgate_server: AuthgateServer, fresh_user: str, config_dir: Path
) -> None:
    """An admin sees the latest events oldest first; a user is refused (exit 4)."""
    url = authgate_server.url
    user_login = run("--url", url, "login", "-u", fresh_user, "--password-stdin",
                     input=f"{USER_PASSWORD}\n")  # fmt: skip
    assert_exits(user_login, 0)
    assert_exits(run("audit", "tail"), 4)

    admin_login = run("--url", url, "login", "-u", "admin", "--password-stdin",
                      input=f"{ADMIN_PASSWORD}\n")  # fmt: skip
    assert_exits(admin_login, 0)
    deadline = time.monotonic() + 10
    while True:  # audit events are written in batches
        result = run("-o", "json", "audit", "tail", "-n", "500", "--type", "AUTH_SUCCESS")
        assert_exits(result, 0)
        events = json.loads(result.stdout)
        actors = [event["actor"] for event in events]
        if fresh_user in actors or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert fresh_user in actors
    assert {event["type"] for event in events} == {"AUTH_SUCCESS"}
    ids = [event["id"] for event in events]
    assert ids == sorted(ids)  # oldest first

    table = run("audit", "tail", "-n", "3")
    assert_exits(table, 0)
    assert len(table_rows(table.stdout)) == 3


# -- TLS warning -----------------------------------------------------------------------------


def test_insecure_prints_a_loud_warning(authgate_server: AuthgateServer, api_key: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """--insecure works but warns on stderr; stdout stays clean JSON."""
    monkeypatch.setenv("AUTHGATE_API_KEY", api_key)
    result = run("--url", authgate_server.url, "--insecure", "call", "GET", "/api/account")
    assert_exits(result, 0)
    assert "WARNING" in result.stderr
    assert "NOT verified" in result.stderr
    json.loads(result.stdout)


# -- real subprocesses -----------------------------------------------------------------------


def test_call_through_a_real_process(authgate_server: AuthgateServer, api_key: str) -> None:
    """`authgate-client call GET /api/account` with only AUTHGATE_URL and AUTHGATE_API_KEY."""
    env = clean_environment()
    env.update({"AUTHGATE_URL": authgate_server.url, "AUTHGATE_API_KEY": api_key})
    result = subprocess.run(
        [str(AUTHGATE_CLIENT), "call", "GET", "/api/account"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["authorities"] == ["ROLE_USER"]
    assert api_key not in result.stdout + result.stderr

    refused = subprocess.run(
        [str(AUTHGATE_CLIENT), "call", "GET", "/api/users"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 4, refused.stderr


def test_login_through_a_real_process(
    authgate_server: AuthgateServer, fresh_user: str, tmp_path: Path
) -> None:
    """login --password-stdin then keys list, as separate processes sharing the token file."""
    env = clean_environment()
    env.update(
        {
            "AUTHGATE_CLIENT_CONFIG_DIR": str(tmp_path / "cfg"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "COLUMNS": "250",
        }
    )
    login = subprocess.run(
        [str(AUTHGATE_CLIENT), "--url", authgate_server.url, "login", "-u", fresh_user,
         "--password-stdin"],
        input=f"{USER_PASSWORD}\n", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert USER_PASSWORD not in login.stdout + login.stderr
    listing = subprocess.run(
        [str(AUTHGATE_CLIENT), "-o", "json", "keys", "list"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == []


# -- against UTMStack ------------------------------------------------------------------------


@pytest.mark.usefixtures("config_dir")
def test_login_with_a_second_factor_against_utmstack() -> None:
    """Against UTMStack v11, login asks for the verification code, then whoami works."""
    fake = utm.FakeUtmStack(version="v11")
    with serve_asgi(fake.app()) as url:
        result = run(
            "--url", url, "login", "-u", utm.TFA_USER, "--password-stdin",
            input=f"{utm.TFA_PASSWORD}\n{utm.TFA_CODE}\n",
        )  # fmt: skip
        assert_exits(result, 0)
        assert "Verification code" in result.output
        whoami = run("-o", "json", "whoami")
        assert_exits(whoami, 0)
        assert json.loads(whoami.stdout)["login"] == utm.TFA_USER

        wrong = run(
            "--url", url, "login", "-u", utm.TFA_USER, "--password-stdin",
            input=f"{utm.TFA_PASSWORD}\n000000\n",
        )  # fmt: skip
        assert_exits(wrong, 3)
        assert "Invalid verification code" in wrong.stderr
