"""``authgate-client`` never writes a server's terminal controls (security review): a
hostile server (or a plain-http connection changed on the way) answers bodies,
messages, names and field errors holding an OSC title change, SGR colours, the C1 CSI
and a bidi override; the CLI's output holds none of them, ``-o json`` keeps the exact
values as JSON escapes, and the CLI's own colours still show on a terminal."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from rich.markup import escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from typer.testing import Result

from authgate.client._cli._terminal import SafeConsole, json_printable, printable
from tests.client.servers import serve_asgi
from tests.client.test_cli import assert_exits, run

# A title change (OSC ... ST), a red background and a reset (SGR), the C1 CSI's own
# colour, a right-to-left override; and markup and an emoji code, which are text.
HOSTILE = "\x1b]0;TITLE\x1b\\\x1b[41mRED\x1b[0m \x9b31mC1 \u202eevil [/x] :smiley:"
CONTROLS = ("\x1b", "\x9b", "\u202e")


def assert_harmless(*outputs: str) -> None:
    for output in outputs:
        for control in CONTROLS:
            assert control not in output, (control, output)


def hostile_app() -> Starlette:
    key = {
        "id": f"id-{HOSTILE}",
        "name": HOSTILE,
        "prefix": HOSTILE,
        "status": "active",
        "allowedIp": [HOSTILE],
        "scopes": ["read"],
    }

    async def account(request: Request) -> Response:
        return JSONResponse({"login": HOSTILE, "firstName": HOSTILE, "authorities": [HOSTILE]})

    async def refused(request: Request) -> Response:
        field = {"field": HOSTILE, "message": f"not so: {HOSTILE}"}
        body = {"message": HOSTILE, "fieldErrors": [field]}
        return JSONResponse(body, status_code=400)

    async def api_keys(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([key], headers={"X-Total-Count": "1"})
        if (await request.json())["name"] == "refused":
            return await refused(request)
        return JSONResponse({**key, "key": "agk_created_key_value"}, status_code=201)

    async def text(request: Request) -> Response:
        return PlainTextResponse(f"line one\r\n{HOSTILE}\ttab\n")

    return Starlette(
        routes=[
            Route("/api/account", account),
            Route("/api/api-keys", api_keys, methods=["GET", "POST"]),
            Route("/text", text),
            Route("/refused", refused),
        ]
    )


@pytest.fixture
def hostile_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("AUTHGATE_API_KEY", "agk_x_not-a-real-key-but-long-enough")
    with serve_asgi(hostile_app()) as url:
        monkeypatch.setenv("AUTHGATE_URL", url)
        yield url


def cli(*args: str) -> Result:
    result = run(*args)
    assert_harmless(result.stdout, result.stderr)
    return result


def test_printable_replaces_controls_and_keeps_text() -> None:
    shown = printable(f"a\r\nb\tc\n{HOSTILE}\x07\x7f\x85\u2028\u2066é")
    assert shown.startswith("a\nb\tc\n\ufffd]0;TITLE\ufffd\\\ufffd[41mRED")
    assert shown.endswith(":smiley:" + "\ufffd" * 5 + "é")
    assert_harmless(shown)


def test_json_printable_escapes_what_json_dumps_lets_through() -> None:
    """ensure_ascii=False leaves DEL, C1 and the Unicode controls raw: they become
    escapes; the JSON reads back to the same values, non-ASCII letters stay letters."""
    value = {"name": f"{HOSTILE}\x7f\x85\u2028é"}
    text = json_printable(json.dumps(value, ensure_ascii=False))
    assert_harmless(text)
    assert "\\u009b" in text
    assert "é" in text
    assert json.loads(text) == value


def test_the_clis_own_colours_remain_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, color_system="standard")
    console.print(f"[red]error:[/red] {escape(HOSTILE)}")
    output = buffer.getvalue()
    assert "\x1b[31m" in output  # rich's red
    assert "\x1b]0;" not in output
    assert "\x1b[41m" not in output
    assert "\x9b" not in output
    assert ":smiley:" in output  # an emoji code is text


@pytest.mark.usefixtures("hostile_url")
def test_a_text_body_is_printed_without_its_controls() -> None:
    result = cli("call", "GET", "/text")
    assert_exits(result, 0)
    assert "line one\n" in result.stdout
    assert "TITLE" in result.stdout
    assert "tab" in result.stdout


@pytest.mark.usefixtures("hostile_url")
def test_json_bodies_keep_their_values_as_escapes() -> None:
    result = cli("call", "GET", "/api/account")
    assert_exits(result, 0)
    assert json.loads(result.stdout)["login"] == HOSTILE
    as_json = cli("-o", "json", "whoami")
    assert_exits(as_json, 0)
    account: dict[str, Any] = json.loads(as_json.stdout)
    assert account["firstName"] == HOSTILE


@pytest.mark.usefixtures("hostile_url")
def test_tables_and_records_are_printed_without_controls() -> None:
    assert_exits(cli("whoami"), 0)
    listed = cli("keys", "list")
    assert_exits(listed, 0)
    assert "TITLE" in listed.stdout
    shown = cli("-o", "json", "keys", "list")
    assert json.loads(shown.stdout)[0]["name"] == HOSTILE


@pytest.mark.usefixtures("hostile_url")
def test_messages_about_a_created_key_are_text() -> None:
    """The new key's id and name, printed in a sentence: no controls, no markup."""
    created = cli("keys", "create", "--name", "ci", "--expires-in", "1d")
    assert_exits(created, 0)
    assert "[/x]" in created.stderr
    assert "agk_created_key_value" in created.stdout


@pytest.mark.usefixtures("hostile_url")
def test_error_messages_and_field_errors_are_printed_without_controls() -> None:
    called = cli("call", "GET", "/refused")
    assert_exits(called, 1)
    assert "error: 400" in called.stderr
    assert json.loads(called.stdout)["message"] == HOSTILE  # the body, as JSON
    refused = cli("keys", "create", "--name", "refused", "--expires-in", "1d")
    assert_exits(refused, 1)
    assert refused.stderr.count("TITLE") == 3  # the message, a field and its message
