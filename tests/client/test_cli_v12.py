"""``authgate-client`` with v12 token pairs (issue 17) against ``authgate serve``:
``login --v12``, automatic refresh, ``sessions list|revoke``, ``logout``."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx2
import pyotp
import pytest

from authgate.client import Client, ClientConfig, TokenPair, V12Credentials
from tests.client.servers import AuthgateServer
from tests.client.support import USER_PASSWORD
from tests.client.test_cli import assert_exits, run

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def stored(config_dir: Path, url: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(json.loads((config_dir / "tokens.json").read_text())[url])
    return value


def other_device(server: AuthgateServer, login: str) -> str:
    """A v12 login elsewhere (another device); returns its refresh token."""
    pairs: list[TokenPair] = []
    config = ClientConfig(server.url, V12Credentials(login, USER_PASSWORD))
    with Client(config, on_tokens=pairs.append) as client:
        client.login()
    return pairs[-1].refresh_token


def refresh_status(server: AuthgateServer, refresh_token: str) -> int:
    response = httpx2.post(
        f"{server.url}/api/v1/auth/refresh", json={"refresh_token": refresh_token}
    )
    return response.status_code


def test_v12_login_refresh_sessions_and_logout(
    authgate_server: AuthgateServer, fresh_user: str, config_dir: Path
) -> None:
    """The CLI's v12 flow: the pair is stored privately and never printed; a refused
    access token is refreshed and the rotated refresh token stored; sessions are listed
    and revoked (by id, then all others); logout ends the session on the server."""
    url = authgate_server.url
    result = run(
        "--url", url, "login", "--v12", "-u", fresh_user, "--password-stdin",
        input=f"{USER_PASSWORD}\n",
    )  # fmt: skip
    assert_exits(result, 0)
    assert stat.S_IMODE((config_dir / "tokens.json").stat().st_mode) == 0o600
    first = stored(config_dir, url)
    assert first["refresh_token"] not in result.output
    assert first["access_token"] not in result.output

    second = other_device(authgate_server, fresh_user)
    third = other_device(authgate_server, fresh_user)

    # An access token the server refuses: one refresh, and the new pair is kept.
    tokens = json.loads((config_dir / "tokens.json").read_text())
    tokens[url] = json.dumps({**first, "access_token": "not.a.token"})
    (config_dir / "tokens.json").write_text(json.dumps(tokens))
    whoami = run("whoami")
    assert_exits(whoami, 0)
    assert "login --v12" in whoami.stdout
    rotated = stored(config_dir, url)
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != "not.a.token"

    listed = run("sessions", "list", "-o", "json")
    assert_exits(listed, 0)
    sessions = json.loads(listed.stdout)
    assert len(sessions) == 3
    assert [s["current"] for s in sessions].count(True) == 1
    table = run("sessions", "list")
    assert_exits(table, 0)
    assert "*" in table.stdout

    # The other two are the other devices', in some order: one of their refresh tokens
    # stops working (the one still working is rotated here; --others ends it below).
    others = [s["id"] for s in sessions if not s["current"]]
    assert_exits(run("sessions", "revoke", others[0]), 0)
    assert sorted([refresh_status(authgate_server, t) for t in (second, third)]) == [200, 401]
    assert_exits(run("sessions", "revoke", others[0]), 5)  # already gone
    assert_exits(run("sessions", "revoke", "--others"), 0)
    remaining = json.loads(run("sessions", "list", "-o", "json").stdout)
    assert [s["current"] for s in remaining] == [True]

    before_logout = stored(config_dir, url)
    assert_exits(run("logout"), 0)
    assert json.loads((config_dir / "tokens.json").read_text()) == {}
    me = httpx2.get(
        f"{url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {before_logout['access_token']}"},
    )
    assert me.status_code == 401
    assert refresh_status(authgate_server, before_logout["refresh_token"]) == 401
    assert_exits(run("sessions", "list"), 3)


def enrol_totp(server: AuthgateServer, login: str) -> list[str]:
    """TOTP through v12's /tfa/enroll for ``login``; its recovery codes."""
    pairs: list[TokenPair] = []
    with Client(
        ClientConfig(server.url, V12Credentials(login, USER_PASSWORD)), on_tokens=pairs.append
    ) as client:
        client.login()
    headers = {"Authorization": f"Bearer {pairs[-1].access.value}"}
    enroll = f"{server.url}/api/v1/tfa/enroll"
    init = httpx2.post(enroll, json={"stage": "INIT", "type": "totp"}, headers=headers)
    assert init.status_code == 200, init.text
    secret = httpx2.URL(init.json()["init"]["otp_auth_url"]).params["secret"]
    code = pyotp.TOTP(secret).now()
    body = {"stage": "VERIFY", "type": "totp", "code": code}
    assert httpx2.post(enroll, json=body, headers=headers).json()["verified"] is True
    complete = httpx2.post(enroll, json={"stage": "COMPLETE", "type": "totp"}, headers=headers)
    assert complete.json()["enabled"] is True
    codes: list[str] = complete.json()["recovery_codes"]
    return codes


def test_v12_login_with_a_second_factor_takes_the_code(
    authgate_server: AuthgateServer, fresh_user: str, config_dir: Path
) -> None:
    """``login --v12`` for a user with TOTP: the server asks for the code, ``--code``
    gives it (here a recovery code), and the pair is stored as without a factor; a wrong
    code stores nothing."""
    url = authgate_server.url
    codes = enrol_totp(authgate_server, fresh_user)
    login = ("--url", url, "login", "--v12", "-u", fresh_user, "--password-stdin")
    wrong = run(*login, "--code", "000000", input=f"{USER_PASSWORD}\n")
    assert_exits(wrong, 3)
    assert not (config_dir / "tokens.json").exists() or url not in json.loads(
        (config_dir / "tokens.json").read_text()
    )
    result = run(*login, "--code", codes[0], input=f"{USER_PASSWORD}\n")
    assert_exits(result, 0)
    assert stored(config_dir, url)["refresh_token"]
    assert_exits(run("whoami"), 0)


@pytest.mark.usefixtures("config_dir")
def test_sessions_revoke_needs_an_id_or_others() -> None:
    """Neither or both: a usage error before anything is sent."""
    assert_exits(run("sessions", "revoke"), 2)
    assert_exits(run("sessions", "revoke", "some-id", "--others"), 2)
    assert_exits(run("--url", "http://127.0.0.1:1", "login", "--v12", "--remember-me"), 2)


@pytest.mark.usefixtures("config_dir")
def test_revoking_an_unknown_session_is_not_a_wrong_url(
    authgate_server: AuthgateServer, fresh_user: str
) -> None:
    """v12 errors carry no code ({"error": ...}): a 404 for a session is still the
    server's answer about that session, not a sign of a wrong base URL."""
    result = run(
        "--url", authgate_server.url, "login", "--v12", "-u", fresh_user, "--password-stdin",
        input=f"{USER_PASSWORD}\n",
    )  # fmt: skip
    assert_exits(result, 0)
    revoked = run("sessions", "revoke", "5f0c7d2e-8b1a-4c39-9e57-0d6a2b4f1c83")
    assert_exits(revoked, 5)
    assert "hint:" not in revoked.stderr
