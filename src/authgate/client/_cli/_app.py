"""``authgate-client``: log in, manage your API keys, call any endpoint, read the audit trail."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from authgate import __version__
from authgate.client._cli._audit import audit_app
from authgate.client._cli._keys import keys_app
from authgate.client._cli._render import print_json, print_record, when
from authgate.client._cli._session import (
    EXIT_USAGE,
    OutputFormat,
    OutputOption,
    Session,
    err,
    exit_code_for_status,
    fail,
    out,
    print_hints,
    reporting,
    session_of,
)
from authgate.client._cli._sessions import sessions_app
from authgate.client._client import Client
from authgate.client._config import (
    ApiKeyCredentials,
    Credentials,
    PasswordCredentials,
    RefreshTokenCredentials,
    TokenCredentials,
    V12Credentials,
    environment,
    mask_secret,
    read_username,
)
from authgate.client._exceptions import APIError, AuthenticationError, SecondFactorRequired
from authgate.client._models import TokenPair
from authgate.client._token_store import StoredPair
from authgate.client._totp import totp_now

__all__ = ["app", "main"]

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 refused by the server (4xx not listed) or redirected; 2 usage or"
    " configuration error; 3 authentication (401, not logged in); 4 forbidden (403);"
    " 5 not found (404); 6 throttled or blocked (429, 423); 7 server error (5xx);"
    " 8 no answer (connection, timeout, TLS)."
)

app = typer.Typer(
    name="authgate-client",
    help=(
        "Call an authgate (or UTMStack) server: log in, manage your API keys, call any"
        " endpoint. Credentials come from AUTHGATE_API_KEY, or AUTHGATE_USERNAME and"
        " AUTHGATE_PASSWORD, or the token stored by 'login'; the server from --url,"
        " AUTHGATE_URL or the last login (UTMSTACK_* names work too)."
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold a password or a key
)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(sessions_app, name="sessions")


def _version(value: bool) -> None:
    if value:
        out.print(f"authgate-client {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="Server URL (default: AUTHGATE_URL, else the last login's)."),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table for people, json for scripts.")
    ] = OutputFormat.table,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Do NOT verify TLS certificates (testing only; prints a warning)."
        ),
    ] = False,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="PEM file of CA certificates to trust (private CA; default: AUTHGATE_CA_BUNDLE).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Seconds per request step (default: AUTHGATE_TIMEOUT, else 10)."
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    if insecure and ca_bundle is not None:
        raise fail("--insecure and --ca-bundle contradict each other", EXIT_USAGE)
    ctx.obj = Session(
        url=url, output=output, insecure=insecure, ca_bundle=ca_bundle, timeout=timeout
    )


@app.command()
def login(
    ctx: typer.Context,
    username: Annotated[
        str | None,
        typer.Option("--username", "-u", help="Login or e-mail (default: AUTHGATE_USERNAME)."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from standard input instead of a prompt."
        ),
    ] = False,
    remember_me: Annotated[
        bool,
        typer.Option("--remember-me", help="Ask for a long-lived token (the server's rememberMe)."),
    ] = False,
    code: Annotated[
        str | None,
        typer.Option(
            "--code",
            help="The second-factor code, if the server asks for one (default: "
            "AUTHGATE_TOTP_CODE, else computed from AUTHGATE_TOTP_SECRET, else a prompt).",
        ),
    ] = None,
    v12: Annotated[
        bool,
        typer.Option(
            "--v12",
            help="Log in at /api/v1/auth/login (UTMStack v12): store a token pair whose"
            " access token is refreshed automatically; 'sessions' lists and revokes them.",
        ),
    ] = False,
) -> None:
    """Log in with a password and store the token (OS keyring, else a 0600 file)."""
    session = session_of(ctx)
    if v12 and remember_me:
        raise fail("--remember-me has no effect with --v12: the refresh token lasts", EXIT_USAGE)
    url = session.server_url()
    login_name = username or read_username(environment()) or typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise fail("no password on standard input", EXIT_USAGE)
    else:
        password = typer.prompt("Password", hide_input=True)

    variables = environment()

    def second_factor() -> str:
        given = code or variables.get("AUTHGATE_TOTP_CODE")
        if given:
            return given
        secret = variables.get("AUTHGATE_TOTP_SECRET")
        if secret:  # automation only: see README (the secret becomes a second password)
            return totp_now(secret)
        if sys.stdin.isatty():
            return str(typer.prompt("Verification code (second factor)"))
        # Nobody to ask (a pipe, cron, CI): a code on the next line is used; at the end of
        # the input, "second factor missing" (exit 3), not click's "Aborted." (exit 1).
        try:
            return str(typer.prompt("Verification code (second factor)"))
        except typer.Abort:
            raise SecondFactorRequired(
                f"the server asks {login_name!r} for a second factor and standard input is"
                " not a terminal: pass --code, or set AUTHGATE_TOTP_CODE"
            ) from None

    store = session.store()
    credentials: Credentials
    if v12:
        credentials = V12Credentials(login_name, password)
        pairs: list[TokenPair] = []
        with (
            reporting(),
            Client(
                session.config(url, credentials),
                on_tokens=pairs.append,
                second_factor=second_factor,
            ) as c,
        ):
            token = c.login()
        location = store.save_pair(url, StoredPair(token.value, pairs[-1].refresh_token))
    else:
        credentials = PasswordCredentials(login_name, password, remember_me=remember_me)
        with (
            reporting(),
            Client(session.config(url, credentials), second_factor=second_factor) as c,
        ):
            token = c.login()
        location = store.save(url, token.value)
    store.remember_url(url)
    where = "the system keyring" if location == "keyring" else f"{store.tokens_file} (0600)"
    expires = f", expires {when(token.expires_at)}" if token.expires_at else ""
    err.print(f"Logged in to {url} as {login_name}{expires}; token stored in {where}.")


@app.command()
def logout(ctx: typer.Context) -> None:
    """Revoke the stored token (v12: end the session) on the server, then forget it here.

    The token is forgotten only once the server has confirmed (or answered 401: nothing
    left to revoke). Forgetting it otherwise (a redirect, an error, no answer) would
    say "Logged out" of a login that still works, and leave no token to retry with.
    """
    session = session_of(ctx)
    url = session.server_url()
    store = session.store()
    # Held until the server has answered: a command refreshing meanwhile would store a
    # newer pair that this logout leaves behind, or revokes from under it.
    with store.locked():
        pair = store.load_pair(url)
        token = store.load(url)
        if token is None:
            err.print(f"Not logged in to {url}: nothing to do.")
            return
        credentials: Credentials = TokenCredentials(token)
        if pair is not None:  # v12: ends the session, its access tokens included
            credentials = RefreshTokenCredentials(pair.refresh_token, pair.access_token)
        config = session.config(url, credentials)
        # An already expired or revoked token (401) leaves nothing to revoke.
        with (
            _kept_unless_confirmed(url),
            reporting(),
            Client(config) as client,
            contextlib.suppress(AuthenticationError),
        ):
            client.logout()
        store.delete(url)
    err.print(f"Logged out of {url}.")


@contextlib.contextmanager
def _kept_unless_confirmed(url: str) -> Iterator[None]:
    """Say that the stored login stays when the server did not confirm the logout."""
    try:
        yield
    except typer.Exit:
        err.print(
            f"The login to {url} is still stored here: the server did not confirm the"
            " logout, so its token may still work. Run 'authgate-client logout' again."
        )
        raise


@app.command()
def whoami(ctx: typer.Context, output: OutputOption = None) -> None:
    """Who the current credentials act as (GET /api/account)."""
    session = session_of(ctx, output)
    with reporting(), session.client() as client:
        account = client.account()
        credentials = client.config.credentials
    if session.json:
        print_json(account)
        return
    if isinstance(credentials, ApiKeyCredentials):
        method = f"API key {mask_secret(credentials.key)}"
    elif isinstance(credentials, PasswordCredentials):
        method = "password (AUTHGATE_USERNAME/AUTHGATE_PASSWORD)"
    elif isinstance(credentials, RefreshTokenCredentials):
        method = "v12 session stored by 'authgate-client login --v12'"
    else:
        method = "token stored by 'authgate-client login'"
    name = " ".join(part for part in (account.first_name, account.last_name) if part)
    print_record(
        [
            ("login", account.login),
            ("name", name or None),
            ("email", account.email),
            ("roles", ", ".join(account.authorities)),
            ("server", client.config.url),
            ("authenticated by", method),
        ]
    )


@app.command(epilog=EXIT_CODES_HELP)
def call(
    ctx: typer.Context,
    method: Annotated[str, typer.Argument(help="GET, POST, PUT, PATCH, DELETE...")],
    path: Annotated[str, typer.Argument(help="Path on the server, e.g. /api/account.")],
    data: Annotated[
        str | None,
        typer.Option(help="JSON body; @FILE reads a file, - reads standard input."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Query parameter NAME=VALUE; repeat for several.")
    ] = None,
) -> None:
    """Call any endpoint; print the answer (JSON pretty-printed); exit code by status."""
    session = session_of(ctx)
    body = _json_body(data)
    params = _pairs(param or [])
    with reporting(), session.client() as client:
        try:
            response = client.request(method, path, params=params, json=body)
        except APIError as error:
            _print_body(error.response.content)
            err.print(f"[red]error:[/red] {error.status_code} {escape(error.message)}")
            print_hints(error)
            raise typer.Exit(exit_code_for_status(error.status_code)) from None
    _print_body(response.content)


def _json_body(data: str | None) -> Any:
    """The ``--data`` body; what cannot be read or is not JSON is a usage error naming
    where it came from (one line, exit 2), before anything is sent."""
    if data is None:
        return None
    if data == "-":
        source = "--data - (standard input)"
        text = sys.stdin.read()
    elif data.startswith("@"):
        path = Path(data[1:])
        source = f"--data @{path}"
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise fail(f"{source}: the file is not UTF-8 text", EXIT_USAGE) from None
        except OSError as error:
            raise fail(f"{source}: cannot read it: {error.strerror or error}", EXIT_USAGE) from None
    else:
        source = "--data"
        text = data
    try:
        return json.loads(text)
    except ValueError as error:
        raise fail(f"{source} is not JSON: {error}", EXIT_USAGE) from None


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise fail(f"--param must be NAME=VALUE, not {item!r}", EXIT_USAGE)
        pairs.append((name, value))
    return pairs


def _print_body(content: bytes) -> None:
    if not content:
        return
    try:
        print_json(json.loads(content))
    except ValueError:
        out.print(content.decode("utf-8", "replace"), markup=False)


def main() -> None:
    """The ``authgate-client`` console script."""
    app(prog_name="authgate-client")
