"""What httpx2 and httpcore2 log keeps no credential: at DEBUG httpcore2 logs every
response's headers, and a login's answer carries ``Authorization: Bearer <jwt>`` (and
may set a cookie); the SDK installs a filter on their loggers that masks those values
and anything shaped like a bearer token."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from authgate.client import AsyncClient, Client, ClientConfig, PasswordCredentials
from authgate.client._log_redaction import install_log_redaction, redacted
from tests.client.stalling_server import StallingServer

PASSWORD = PasswordCredentials("alice", "correct horse battery")


def jwt() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256'})}.{part({'sub': 'alice'})}.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


TOKEN = jwt()
COOKIE = "session-cookie-value-1f2e3d"
ACCOUNT = {"login": "alice", "authorities": ["ROLE_USER"]}


def login_server() -> StallingServer:
    return StallingServer(
        {
            "/api/authenticate": (200, {"id_token": TOKEN, "authenticated": True}),
            "/api/account": (200, ACCOUNT),
        },
        headers={
            "/api/authenticate": {
                "Authorization": f"Bearer {TOKEN}",
                "Set-Cookie": f"SESSION={COOKIE}; HttpOnly",
            }
        },
    )


def assert_no_credential(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text
    assert "receive_response_headers" in text  # httpcore2 did log the headers
    assert TOKEN not in text
    assert TOKEN.split(".")[2] not in text
    assert COOKIE not in text
    assert "[redacted]" in text


def test_a_login_answer_leaves_no_token_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with login_server() as server, Client(ClientConfig(server.url, PASSWORD, timeout=5)) as c:
        assert c.account().login == "alice"
    assert_no_credential(caplog)


async def test_a_login_answer_leaves_no_token_in_debug_logs_async(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with login_server() as server:
        async with AsyncClient(ClientConfig(server.url, PASSWORD, timeout=5)) as client:
            assert (await client.account()).login == "alice"
    assert_no_credential(caplog)


def test_a_v10_second_factor_code_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """UTMStack v10 takes the code in the query; httpx2 logs the URL at INFO."""
    caplog.set_level(logging.INFO)
    answers: dict[str, tuple[int, dict[str, Any]]] = {
        "/api/authenticate": (200, {"id_token": "pre-verification", "authenticated": False}),
        "/api/tfa/verify-code": (404, {}),
        "/api/tfa/verifyCode": (200, {"id_token": TOKEN, "authenticated": True}),
        "/api/account": (200, ACCOUNT),
    }
    with (
        StallingServer(answers) as server,
        Client(ClientConfig(server.url, PASSWORD, timeout=5), second_factor=lambda: "654321") as c,
    ):
        assert c.account().login == "alice"
    assert "/api/tfa/verifyCode?code=[redacted]" in caplog.text
    assert "654321" not in caplog.text


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("[(b'authorization', b'Bearer abc.def.ghi')]", "abc.def.ghi"),
        ("[(b'Utm-Api-Key', b'agk_id_secretsecret')]", "agk_id_secretsecret"),
        ("[(b'x-internal-key', b'internal-secret')]", "internal-secret"),
        ("[(b'set-cookie', b'SESSION=abc; HttpOnly')]", "SESSION=abc"),
        ('headers {"Authorization": "bearer tok-123"}', "tok-123"),
        (f"something {TOKEN} else", TOKEN),
        ("GET http://h/api/tfa/verifyCode?code=654321 200", "654321"),
        ("GET http://h/x?page=1&access_token=tok-9&size=5", "tok-9"),
        ("GET http://h/x?api_key=k-9", "k-9"),
    ],
)
def test_credentials_are_masked_in_a_message(message: str, secret: str) -> None:
    assert secret not in redacted(message)


@pytest.mark.parametrize(
    "message",
    [
        "[(b'content-type', b'application/json'), (b'content-length', b'42')]",
        'HTTP Request: GET http://h/api/api-keys?page=2&size=20 "HTTP/1.1 200 OK"',
    ],
)
def test_other_text_is_kept(message: str) -> None:
    assert redacted(message) == message


def test_the_filter_never_makes_a_logging_call_raise() -> None:
    """A record whose message cannot be built (a mapping that lacks the named key, an
    argument whose str() raises) goes on to the handlers, which report it, instead of
    the filter raising out of the caller's logging call (the diff review)."""
    install_log_redaction()
    logger = logging.getLogger("httpcore2.http11")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # no handler: only the filter runs (lastResort: >= WARNING)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    try:
        logger.debug("%(a)s", {"b": 1})
        logger.debug("%s", Unprintable())
    finally:
        logger.setLevel(level)
        logger.propagate = propagate
