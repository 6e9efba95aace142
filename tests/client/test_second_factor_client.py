"""The SDK and ``authgate-client login`` with a second factor: against authgate itself
(in-process) and against UTMStack's v11 shape (the fake), with the code from a hook,
``--code``, ``AUTHGATE_TOTP_CODE`` or a TOTP secret in ``AUTHGATE_TOTP_SECRET``."""

from __future__ import annotations

import json

import pyotp
import pytest
from typer.testing import CliRunner, Result

from authgate.client import PasswordCredentials, SecondFactorRejected
from authgate.client._cli import app
from authgate.client._totp import totp_now
from authgate.security.second_factor import totp_code, totp_step
from tests.client import utmstack_fake as utm
from tests.client.servers import serve_asgi
from tests.client.support import USER_PASSWORD, asgi_client
from tests.conftest import Harness, bearer


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input, env=env)


def test_sdk_totp_matches_an_authenticator_app() -> None:
    secret = pyotp.random_base32()
    for moment in (0.0, 1_800_000_015.0, 1_800_000_029.999):
        assert totp_now(secret, at=moment) == pyotp.TOTP(secret).at(moment)
    assert totp_now(secret.lower(), at=59.0) == pyotp.TOTP(secret).at(59.0)


async def enrolled_alice(harness: Harness) -> str:
    """alice with TOTP on; her secret."""
    await harness.create_user("alice", USER_PASSWORD)
    token = await harness.login("alice", USER_PASSWORD)
    init = await harness.client.post(
        "/api/tfa/init", json={"method": "TOTP"}, headers=bearer(token)
    )
    secret: str = init.json()["delivery"]["secret"]
    code = totp_code(secret, totp_step(harness.clock().timestamp()))
    await harness.client.post(
        "/api/tfa/verify", json={"method": "TOTP", "code": code}, headers=bearer(token)
    )
    await harness.client.post(
        "/api/tfa/complete", json={"method": "TOTP", "enable": True}, headers=bearer(token)
    )
    return secret


async def test_sdk_hook_completes_an_authgate_login(harness: Harness) -> None:
    secret = await enrolled_alice(harness)

    def code() -> str:
        return totp_code(secret, totp_step(harness.clock().timestamp()))

    credentials = PasswordCredentials("alice", USER_PASSWORD)
    async with asgi_client(harness, credentials, second_factor=code) as client:
        assert (await client.account()).login == "alice"
    async with asgi_client(harness, credentials, second_factor=lambda: "000000") as client:
        with pytest.raises(SecondFactorRejected):
            await client.account()


@pytest.mark.usefixtures("config_dir")
@pytest.mark.parametrize("how", ["option", "code_variable", "secret_variable"])
def test_cli_login_takes_the_code_without_prompting(how: str) -> None:
    """Against UTMStack v11: ``--code``, AUTHGATE_TOTP_CODE, or AUTHGATE_TOTP_SECRET."""
    fake = utm.FakeUtmStack(version="v11")
    with serve_asgi(fake.app()) as url:
        args = ["--url", url, "login", "-u", utm.TFA_USER, "--password-stdin"]
        env: dict[str, str] = {}
        if how == "option":
            args += ["--code", utm.TFA_CODE]
        elif how == "code_variable":
            env["AUTHGATE_TOTP_CODE"] = utm.TFA_CODE
        else:
            # The fake's code is fixed; a secret whose current code it is cannot be made,
            # so the variable is shown to be used by the refusal of its (other) code.
            env["AUTHGATE_TOTP_SECRET"] = pyotp.random_base32()
        result = run(*args, input=f"{utm.TFA_PASSWORD}\n", env=env)
        assert "Verification code" not in result.output  # never prompted
        if how == "secret_variable":
            assert result.exit_code == 3, result.output
            return
        assert result.exit_code == 0, result.output
        whoami = run("-o", "json", "whoami")
        assert json.loads(whoami.stdout)["login"] == utm.TFA_USER


@pytest.mark.usefixtures("config_dir")
def test_cli_login_without_a_code_or_a_terminal_exits_3() -> None:
    """stdin is not a terminal and holds no code after the password: nobody can be
    asked, so "second factor missing" (exit 3, naming --code), not "Aborted." (exit 1)."""
    fake = utm.FakeUtmStack(version="v11")
    with serve_asgi(fake.app()) as url:
        args = ["--url", url, "login", "-u", utm.TFA_USER, "--password-stdin"]
        result = run(*args, input=f"{utm.TFA_PASSWORD}\n", env={"AUTHGATE_TOTP_CODE": ""})
    assert result.exit_code == 3, result.output
    assert "--code" in result.stderr
    assert "Aborted" not in result.output


@pytest.mark.usefixtures("config_dir")
def test_cli_login_reads_a_code_piped_after_the_password() -> None:
    """Without a terminal, a code on the line after the password is used."""
    fake = utm.FakeUtmStack(version="v11")
    with serve_asgi(fake.app()) as url:
        args = ["--url", url, "login", "-u", utm.TFA_USER, "--password-stdin"]
        result = run(*args, input=f"{utm.TFA_PASSWORD}\n{utm.TFA_CODE}\n")
    assert result.exit_code == 0, result.output
