"""What every ``authgate-client`` command shares: the global options, the client they
build, the token store, the consoles, and the one place errors become exit codes.

Exit codes:

== =====================================================================================
0  success
1  the server refused the request (400, 409, 412, 422 and any other 4xx not below),
   redirected it (3xx: never followed, so nothing was done), or answered something
   unexpected
2  usage or configuration error (bad option, no URL, no credentials)
3  authentication: 401, not logged in, second factor missing or refused
4  permission denied: 403
5  not found: 404
6  throttled or blocked: 429, 423 (wait ``Retry-After``)
7  server error: 5xx
8  no answer: connection refused, timeout, TLS verification failed
== =====================================================================================
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import httpx2
import typer
from rich.markup import escape

from authgate.client._cli._terminal import SafeConsole
from authgate.client._client import Client
from authgate.client._config import (
    DEFAULT_TIMEOUT,
    ClientConfig,
    Credentials,
    RefreshTokenCredentials,
    TokenCredentials,
    client_config_dir,
    environment,
    read_ca_bundle,
    read_credentials,
    read_timeout,
    read_url,
    shown_request_url,
    shown_url,
    url_problem,
)
from authgate.client._exceptions import (
    APIError,
    AuthenticationError,
    AuthgateClientError,
    ClientConfigError,
    SecondFactorRequired,
    SessionEndedError,
    TransportError,
    ValidationError,
)
from authgate.client._models import TokenPair
from authgate.client._token_store import StoredPair, TokenStore

__all__ = [
    "EXIT_AUTHENTICATION",
    "EXIT_USAGE",
    "OutputFormat",
    "OutputOption",
    "Session",
    "err",
    "exit_code_for_status",
    "out",
    "print_hints",
    "reporting",
    "session_of",
]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_AUTHENTICATION = 3
EXIT_FORBIDDEN = 4
EXIT_NOT_FOUND = 5
EXIT_THROTTLED = 6
EXIT_SERVER = 7
EXIT_TRANSPORT = 8

# Every string printed passes through printable(): what came from the server too.
out = SafeConsole(highlight=False, soft_wrap=True)
err = SafeConsole(stderr=True, highlight=False)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


# The same option on every command that prints a result, so that it is accepted after
# the command too (``authgate-client keys list --output json``), as people type it.
OutputOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output", "-o", help="table for people, json for scripts (also before the command)."
    ),
]


def exit_code_for_status(status: int) -> int:
    """The documented exit code for an HTTP status: 0 for a 2xx only (a redirect is
    not followed, so what was asked was not done)."""
    if 200 <= status < 300:
        return EXIT_OK
    return {
        401: EXIT_AUTHENTICATION,
        403: EXIT_FORBIDDEN,
        404: EXIT_NOT_FOUND,
        423: EXIT_THROTTLED,
        429: EXIT_THROTTLED,
    }.get(status, EXIT_SERVER if status >= 500 else EXIT_REFUSED)


def _requested_url(error: APIError) -> str:
    try:
        return shown_request_url(error.response.request.url)
    except RuntimeError:  # a response built without its request (tests, fakes)
        return "such path"


def wrong_base_hint(requested: str) -> str:
    return (
        f"the server has no {requested}. Is the URL the server's base address, without"
        " a path such as /api (e.g. https://authgate.example.com)?"
    )


def path_unknown(error: APIError) -> bool:
    """A 404 for the path itself, not for a thing at it ("API key not found", v12's
    "session not found"): the generic "Not Found" of a route the server does not have,
    or a body that is neither authgate's (``{"code", "message", ...}``) nor v12's
    (``{"error": ...}``): another server, or a proxy, most often because the URL carries
    a path of its own."""
    if error.status_code != 404:
        return False
    if error.message.strip().lower() == "not found":
        return True
    try:
        body = json.loads(error.response.content)
    except ValueError:
        return True
    if not isinstance(body, dict):
        return True
    authgate = isinstance(body.get("code"), str)
    v12 = set(body) == {"error"} and isinstance(body["error"], str)
    return not (authgate or v12)


def print_hints(error: APIError) -> None:
    """What may help after the error's own line: a wrong base URL, when to retry."""
    if path_unknown(error):
        err.print(f"  hint: {escape(wrong_base_hint(_requested_url(error)))}")
    if error.retry_after is not None:
        err.print(f"  retry after {error.retry_after:g} s")


def checked_url(url: str, *, source: str) -> str:
    """``url`` if it can name a server (http or https, with a host, and none of what
    ``url_problem`` refuses); else a usage error that does not show a password in it."""
    problem = url_problem(url)
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL:  # refused outright (a bad port, bad characters)
        parsed = None
    usable = (
        problem is None
        and parsed is not None
        and parsed.scheme in ("http", "https")
        and bool(parsed.host)
        and (parsed.port is None or 0 < parsed.port < 65536)
    )
    if not usable:
        why = f"; {problem}" if problem else ""
        raise fail(
            f"{source}: not a server URL: {shown_url(url)!r}{why}; use"
            " http(s)://host[:port], e.g. https://authgate.example.com",
            EXIT_USAGE,
        )
    return url


def checked_outcome(outcome: str | None) -> str | None:
    """An ``--outcome`` filter: ``success``, ``failure`` or none; else a usage error."""
    if outcome not in (None, "success", "failure"):
        raise fail("--outcome must be success or failure", EXIT_USAGE)
    return outcome


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


@contextmanager
def reporting() -> Iterator[None]:
    """Known failures become one red line (never a traceback) and a documented exit code."""
    try:
        yield
    except ClientConfigError as error:
        raise fail(str(error), EXIT_USAGE) from None
    except (SecondFactorRequired, SessionEndedError) as error:
        raise fail(str(error), EXIT_AUTHENTICATION) from None
    except APIError as error:
        field_errors = error.field_errors if isinstance(error, ValidationError) else ()
        # The first field's message is often the error's own (a long list of choices
        # for an unknown value): said once, on the first line, with the field's name.
        first = field_errors[0] if field_errors else None
        if first is not None and first.message == error.message:
            field_errors = field_errors[1:]
            subject = f"{escape(first.field)}: {escape(error.message)}"
        else:
            subject = escape(error.message)
        err.print(f"[red]error:[/red] {error.status_code} {subject}")
        for field_error in field_errors:
            err.print(f"  {escape(field_error.field)}: {escape(field_error.message)}")
        print_hints(error)
        if isinstance(error, AuthenticationError):  # includes a refused second factor (412)
            raise typer.Exit(EXIT_AUTHENTICATION) from None
        raise typer.Exit(exit_code_for_status(error.status_code)) from None
    except TransportError as error:
        raise fail(str(error), EXIT_TRANSPORT) from None
    except AuthgateClientError as error:
        raise fail(str(error), EXIT_REFUSED) from None


@dataclass
class Session:
    """The global options of one invocation."""

    url: str | None
    output: OutputFormat
    insecure: bool
    ca_bundle: Path | None
    timeout: float | None

    @property
    def json(self) -> bool:
        return self.output is OutputFormat.json

    def store(self) -> TokenStore:
        """The token store, its directory checked before anything is read or sent."""
        store = TokenStore(client_config_dir())
        try:
            store.check_directory()
        except ClientConfigError as error:
            raise fail(str(error), EXIT_USAGE) from None
        return store

    def server_url(self) -> str:
        """``--url``, else ``AUTHGATE_URL``/``UTMSTACK_URL``, else the last login's URL."""
        if self.url:
            return checked_url(self.url, source="--url")
        from_environment = read_url(environment())
        if from_environment:
            return checked_url(from_environment, source="AUTHGATE_URL (or UTMSTACK_URL)")
        store = self.store()
        url = store.remembered_url()
        if not url:
            raise fail(
                "no server: pass --url, set AUTHGATE_URL, or log in with --url once", EXIT_USAGE
            )
        # Checked too: an older version stored whatever URL the login was given.
        return checked_url(url, source=f"the last login's URL ({store.settings_file})")

    def credentials(self, url: str) -> Credentials:
        """From the environment (API key or username/password), else the stored login:
        a v12 token pair, or a v10/v11 token."""
        credentials = read_credentials(environment())
        if credentials is not None:
            return credentials
        store = self.store()
        pair = store.load_pair(url)
        if pair is not None:
            return RefreshTokenCredentials(pair.refresh_token, pair.access_token or None)
        token = store.load(url)
        if token is None:
            raise fail(
                f"not logged in to {url}: run 'authgate-client login',"
                " or set AUTHGATE_API_KEY (or AUTHGATE_USERNAME and AUTHGATE_PASSWORD)",
                EXIT_AUTHENTICATION,
            )
        return TokenCredentials(token)

    def config(self, url: str, credentials: Credentials) -> ClientConfig:
        """The client's settings: ``--timeout`` and ``--ca-bundle``, else
        ``AUTHGATE_TIMEOUT`` and ``AUTHGATE_CA_BUNDLE``, as the SDK reads them."""
        variables = environment()
        try:
            timeout = self.timeout if self.timeout is not None else read_timeout(variables)
            ca_bundle = self.ca_bundle if self.ca_bundle is not None else read_ca_bundle(variables)
        except ClientConfigError as error:
            raise fail(str(error), EXIT_USAGE) from None
        if self.insecure and ca_bundle is not None:  # --ca-bundle with it is refused earlier
            raise fail(
                "--insecure and AUTHGATE_CA_BUNDLE contradict each other: unset one", EXIT_USAGE
            )
        warn_about_transport(url, insecure=self.insecure)
        return ClientConfig(
            url=url,
            credentials=credentials,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            verify=not self.insecure,
            ca_bundle=ca_bundle,
        )

    @contextmanager
    def client(self, *, second_factor: Callable[[], str] | None = None) -> Iterator[Client]:
        """A client for the server, with the credentials this session finds. A stored
        login is used under the store's lock, from loading it to saving the pair a
        refresh returns: another command refreshing with the same refresh token
        meanwhile would be reuse, which ends the session."""
        url = self.server_url()
        with ExitStack() as stack:
            if read_credentials(environment()) is None:
                stack.enter_context(self.store().locked())
            credentials = self.credentials(url)
            on_tokens = None
            if isinstance(credentials, RefreshTokenCredentials):
                on_tokens = self.pair_keeper(url)
            config = self.config(url, credentials)
            yield stack.enter_context(
                Client(config, second_factor=second_factor, on_tokens=on_tokens)
            )

    def pair_keeper(self, url: str) -> Callable[[TokenPair], None]:
        """Stores every new v12 pair at once: after a refresh, only the new refresh
        token works, so losing it would end the session."""
        store = self.store()

        def keep(pair: TokenPair) -> None:
            store.save_pair(url, StoredPair(pair.access.value, pair.refresh_token))

        return keep


def session_of(ctx: typer.Context, output: OutputFormat | None = None) -> Session:
    """The invocation's options; ``output`` given after the command wins."""
    session = ctx.find_object(Session)
    if session is None:  # a sub-command invoked without the root callback (tests)
        session = Session(None, OutputFormat.table, False, None, None)
        ctx.obj = session
    if output is not None:
        session.output = output
    return session


def warn_about_transport(url: str, *, insecure: bool) -> None:
    """Say so, loudly, when credentials may be read or changed on the way."""
    if insecure:
        err.print(
            "[bold red]WARNING: --insecure: TLS certificates are NOT verified. Anyone between"
            " you and the server can read and change this traffic, including your password,"
            " token or API key. Use --ca-bundle for a private CA instead.[/bold red]"
        )
    parsed = httpx2.URL(url)
    if parsed.scheme == "http" and not _is_loopback(parsed.host):
        err.print(
            "[yellow]warning: plain http:// to a remote host: credentials travel in clear"
            " text; use https://.[/yellow]"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
