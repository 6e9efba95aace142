"""``authgate-client`` says what went wrong in words (issue 16 item 10): a URL that is
not one, a base URL with a path, a grace period beyond the maximum, a key already
revoked, a refused audit type listed once; ``-o json`` in the REST API's camelCase,
accepted after the command too."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from authgate.client import APIError
from authgate.client._cli._session import path_unknown, print_hints
from authgate.client._exceptions import error_for
from tests.client.servers import AuthgateServer
from tests.client.support import USER_PASSWORD, unique
from tests.client.test_cli import assert_exits, run, table_rows

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def logged_in(authgate_server: AuthgateServer, fresh_user: str, config_dir: Path) -> str:
    result = run(
        "--url", authgate_server.url, "login", "-u", fresh_user, "--password-stdin",
        input=f"{USER_PASSWORD}\n",
    )  # fmt: skip
    assert_exits(result, 0)
    return fresh_user


@pytest.mark.usefixtures("config_dir")
@pytest.mark.parametrize("url", ["not-a-url", "ftp://host", "http://", "http://h:99999"])
def test_a_url_that_is_not_one_is_a_url_error(url: str) -> None:
    result = run("--url", url, "keys", "list")
    assert_exits(result, 2)
    assert "not a server URL" in result.stderr
    assert "not logged in" not in result.stderr


@pytest.mark.usefixtures("config_dir")
def test_a_bad_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHGATE_URL", "authgate.example.com")
    result = run("whoami")
    assert_exits(result, 2)
    assert "AUTHGATE_URL" in result.stderr
    assert "not a server URL" in result.stderr


@pytest.mark.usefixtures("config_dir")
@pytest.mark.parametrize("where", ["--url", "AUTHGATE_URL"])
@pytest.mark.parametrize(
    "url",
    [
        "http://bob:pw-in-the-url@127.0.0.1:9",
        "http://bob:pw-in/the-url@127.0.0.1:9",
        "https://127.0.0.1:9/?token=pw-in-the-url",
    ],
)
def test_a_url_with_a_password_or_query_is_refused_without_showing_it(
    url: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not accepted (the password would show in errors, whoami, repr) nor echoed."""
    monkeypatch.setenv("AUTHGATE_API_KEY", "agk_x_not-a-real-key-but-long-enough")
    if where == "--url":
        result = run("--url", url, "whoami")
    else:
        monkeypatch.setenv("AUTHGATE_URL", url)
        result = run("whoami")
    assert_exits(result, 2)
    assert "not a server URL" in result.stderr
    assert where in result.stderr
    assert "pw-in" not in result.output


def test_a_stored_url_with_a_password_is_refused_without_showing_it(config_dir: Path) -> None:
    """An earlier version stored the URL a login was given, password and all."""
    config_dir.mkdir(parents=True)
    (config_dir / "client.json").write_text(json.dumps({"url": "http://bob:pw-in@127.0.0.1:9"}))
    result = run("whoami")
    assert_exits(result, 2)
    assert "last login's URL" in result.stderr
    assert "pw-in" not in result.output


def test_a_404_from_a_base_url_with_a_path_gets_a_hint(
    authgate_server: AuthgateServer, logged_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = json.loads(run("-o", "json", "keys", "create", "--name", unique("base")).stdout)
    monkeypatch.setenv("AUTHGATE_API_KEY", created["key"])
    wrong = run("--url", authgate_server.url + "/api", "keys", "list")
    assert_exits(wrong, 5)
    assert "hint:" in wrong.stderr
    assert "base address" in wrong.stderr
    # authgate's own "no such key" is not a wrong base URL: no hint.
    missing = run("--url", authgate_server.url, "keys", "show", "999999")
    assert_exits(missing, 5)
    assert "hint:" not in missing.stderr


def test_call_gets_the_wrong_url_hint_too(
    authgate_server: AuthgateServer, logged_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = json.loads(run("-o", "json", "keys", "create", "--name", unique("call")).stdout)
    monkeypatch.setenv("AUTHGATE_API_KEY", created["key"])
    wrong = run("--url", authgate_server.url + "/api", "call", "GET", "/api/api-keys")
    assert_exits(wrong, 5)
    assert "hint:" in wrong.stderr
    assert "base address" in wrong.stderr
    missing = run("--url", authgate_server.url, "call", "GET", "/api/api-keys/999999")
    assert_exits(missing, 5)
    assert "hint:" not in missing.stderr


def not_found(content: bytes) -> APIError:
    request = httpx2.Request("GET", "https://a.example/api/x")
    return error_for(httpx2.Response(404, content=content, request=request))


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b'{"code": "api_key_not_found", "message": "API key not found"}', False),
        (b'{"error": "session not found"}', False),  # v12: no code
        (b'{"code": "not_found", "message": "Not Found"}', True),  # a route it lacks
        (b'{"error": "Not Found"}', True),
        (b'{"timestamp": "x", "status": 404, "error": "Nope", "path": "/x"}', True),
        (b"", True),
        (b"<html>404</html>", True),
    ],
)
def test_the_wrong_url_hint_is_for_paths_the_server_lacks(content: bytes, hint: bool) -> None:
    assert path_unknown(not_found(content)) is hint


def test_the_wrong_url_hint_names_the_path_without_its_query(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """UTMStack v10's second step carries the one-time code in the query: a 404 there
    (a base URL with a path) names the path, not the code."""
    request = httpx2.Request("GET", "https://a.example/x/api/tfa/verifyCode?code=493817")
    print_hints(error_for(httpx2.Response(404, request=request)))
    hint = capsys.readouterr().err
    assert "https://a.example/x/api/tfa/verifyCode?…" in hint
    assert "493817" not in hint


@pytest.mark.usefixtures("config_dir")
@pytest.mark.parametrize("command", ["show", "rotate", "revoke", "usage"])
@pytest.mark.parametrize(
    "key_id", ["not-a-uuid", "6f1c3e0a2b4d4c8e9a7f0d5b1e2c3a4f", "{6f1c3e0a-2b4d}", "12a"]
)
def test_a_malformed_key_id_is_refused_before_any_request(
    command: str, key_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text that is no key id (a UUID without hyphens among it) is a usage error in
    words, before any request: the server has no route for it, and its 404 read as a
    wrong base URL (exit 5 and the hint; black-box review, item 6). Nothing listens at
    the URL: a request would end in exit 8."""
    monkeypatch.setenv("AUTHGATE_API_KEY", "agk_x_not-a-real-key-but-long-enough")
    result = run("--url", "http://127.0.0.1:19050", "keys", command, key_id)
    assert_exits(result, 2)
    assert "not a key id" in result.stderr
    assert "base address" not in result.stderr


@pytest.mark.usefixtures("logged_in")
def test_grace_beyond_the_maximum_is_a_readable_message() -> None:
    created = json.loads(run("-o", "json", "keys", "create", "--name", unique("g")).stdout)
    result = run("keys", "rotate", str(created["id"]), "--grace", "30d")
    assert_exits(result, 2)
    assert "--grace 30d is too long" in result.stderr
    assert "7d" in result.stderr
    assert "422" not in result.stderr
    assert_exits(run("keys", "rotate", str(created["id"]), "--grace", "7d"), 0)


@pytest.mark.usefixtures("logged_in")
def test_revoking_a_revoked_key_says_so() -> None:
    created = json.loads(run("-o", "json", "keys", "create", "--name", unique("r")).stdout)
    key_id = str(created["id"])
    first = run("keys", "revoke", key_id)
    assert_exits(first, 0)
    assert f"Revoked API key {key_id}." in first.stderr
    again = run("keys", "revoke", key_id)
    assert_exits(again, 0)
    assert f"API key {key_id} was already revoked at " in again.stderr
    assert "nothing changed" in again.stderr
    assert json.loads(run("keys", "revoke", key_id, "-o", "json").stdout) == {
        "id": created["id"],
        "revoked": True,
        "alreadyRevoked": True,
    }


@pytest.mark.usefixtures("logged_in")
def test_json_uses_the_rest_apis_camel_case_and_output_after_the_command() -> None:
    name = unique("camel")
    assert_exits(run("keys", "create", "--name", name, "--allow-ip", "127.0.0.1"), 0)
    before = run("-o", "json", "keys", "list")
    after = run("keys", "list", "--output", "json")
    short = run("keys", "list", "-o", "json")
    for result in (before, after, short):
        assert_exits(result, 0)
    [key] = [k for k in json.loads(after.stdout) if k["name"] == name]
    assert json.loads(before.stdout) == json.loads(after.stdout) == json.loads(short.stdout)
    assert key["allowedIp"] == ["127.0.0.1"]
    assert {"expiresAt", "createdAt", "lastUsedAt", "rotationGraceUntil", "userId"} <= set(key)
    assert not [field for field in key if "_" in field]

    account = json.loads(run("whoami", "-o", "json").stdout)
    assert {"login", "firstName", "langKey", "createdDate"} <= set(account)

    # The global option still works, and a table stays a table.
    assert table_rows(run("keys", "list").stdout)


def test_unknown_audit_type_lists_the_types_once(
    authgate_server: AuthgateServer, config_dir: Path
) -> None:
    from tests.client.servers import ADMIN_PASSWORD

    login = run("--url", authgate_server.url, "login", "-u", "admin", "--password-stdin",
                input=f"{ADMIN_PASSWORD}\n")  # fmt: skip
    assert_exits(login, 0)
    result = run("audit", "tail", "--type", "NOPE")
    assert_exits(result, 1)
    assert result.stderr.count("AUTH_FAILURE") == 1, result.stderr
