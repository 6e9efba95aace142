"""``authgate service-credentials ...``: what other services present in ``X-Internal-Key``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from authgate.api.schemas import CreatedServiceCredentialDTO, ServiceCredentialDTO
from authgate.cli.console import (
    ConfigOption,
    duration_option,
    err,
    friendly_errors,
    load_settings,
    out,
    with_services,
)
from authgate.cli.output import (
    OutputFormat,
    OutputOption,
    add_row,
    print_json,
    print_table,
    stamp,
    table,
)
from authgate.services.service_credentials import (
    CreatedCredential,
    InternalEndpoint,
    ServiceCredentialView,
)

service_credentials_app = typer.Typer(
    help="Manage service credentials (X-Internal-Key: other services calling authgate's "
    "internal endpoints).",
    no_args_is_help=True,
)

CredentialIdArgument = Annotated[
    str, typer.Argument(help="The credential's id (see service-credentials list).")
]
_KNOWN = ", ".join(endpoint.value for endpoint in InternalEndpoint)

SecretStdinOption = Annotated[
    bool,
    typer.Option(
        "--secret-stdin",
        help="Adopt the service's existing secret (e.g. UTMStack's INTERNAL_KEY), read from "
        "standard input (one line; never an argument), instead of making one. At least 32 "
        "visible ASCII characters and 128 bits of apparent randomness; never printed.",
    ),
]


def _read_secret() -> str:
    """The secret to adopt: one line of standard input (a hidden prompt on a terminal)."""
    if sys.stdin.isatty():
        return str(typer.prompt("Secret", hide_input=True))
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        err.print("[red]error:[/red] no secret on standard input")
        raise typer.Exit(1)
    return secret


def _previous_secret_note(view: ServiceCredentialView) -> str:
    """How long a rotation's previous secret still works, if it does."""
    if view.previous_valid_until is None:
        return ""
    return f"; the previous secret works until {stamp(view.previous_valid_until)}"


def _print_adopted(view: ServiceCredentialView, output: OutputFormat, what: str) -> None:
    """An adopted credential: the secret is the service's own, never printed."""
    if output is OutputFormat.JSON:
        print_json(ServiceCredentialDTO.of(view))
        return
    out.print(
        f"{what} service credential {view.id} ({view.name}) with the secret read from "
        f"standard input (not shown), allowed {', '.join(view.endpoints)}"
        + _previous_secret_note(view),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def _print_created(created: CreatedCredential, output: OutputFormat, what: str) -> None:
    view = created.view
    if output is OutputFormat.JSON:
        print_json(CreatedServiceCredentialDTO.created(created))
        return
    err.print(
        f"{what} service credential {view.id} ({view.name}), allowed "
        f"{', '.join(view.endpoints)}" + _previous_secret_note(view)
    )
    err.print("This is the only time the credential is shown (send it in X-Internal-Key):")
    out.print(created.plaintext, soft_wrap=True, highlight=False, markup=False)


@service_credentials_app.command("create")
def service_credentials_create(
    name: Annotated[str, typer.Option(help="Which service uses it (unique).")],
    endpoint: Annotated[
        list[str] | None,
        typer.Option(help=f"An internal endpoint it may call ({_KNOWN}); repeat for several."),
    ] = None,
    secret_stdin: SecretStdinOption = False,
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """Create a service credential and print it (once: only its hash is stored), or adopt
    the service's existing secret (--secret-stdin; never printed)."""
    endpoints = endpoint or [InternalEndpoint.API_KEYS_AUTHENTICATE.value]
    if secret_stdin:
        secret = _read_secret()
        with friendly_errors():
            view = with_services(
                load_settings(config),
                lambda s: s.service_credentials.adopt(name, endpoints, secret),
            )
        _print_adopted(view, output, "created")
        return
    with friendly_errors():
        created = with_services(
            load_settings(config), lambda s: s.service_credentials.create(name, endpoints)
        )
    _print_created(created, output, "created")


@service_credentials_app.command("list")
def service_credentials_list(
    include_revoked: Annotated[bool, typer.Option(help="Also list revoked ones.")] = False,
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """List service credentials (no secrets)."""
    with friendly_errors():
        views = with_services(
            load_settings(config),
            lambda s: s.service_credentials.list_all(include_revoked=include_revoked),
        )
    if output is OutputFormat.JSON:
        print_json([ServiceCredentialDTO.of(view) for view in views])
        return
    listing = table("id", "name", "status", "endpoints", "created", "rotated", "last used")
    for view in views:
        add_row(
            listing,
            view.id,
            view.name,
            view.status,
            ", ".join(view.endpoints),
            stamp(view.created_at),
            stamp(view.rotated_at, missing="-"),
            stamp(view.last_used_at),
        )
    print_table(listing)


@service_credentials_app.command("rotate")
def service_credentials_rotate(
    credential_id: CredentialIdArgument,
    grace: Annotated[
        str,
        typer.Option(
            help="How long the previous secret keeps working: 0, or a number with s, m, h, "
            "d or w, at most 7d (e.g. 1h)."
        ),
    ] = "0",
    secret_stdin: SecretStdinOption = False,
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """Give a service credential a new secret and print it (once), or adopt the service's
    existing secret (--secret-stdin; never printed)."""
    period = duration_option(grace, option="--grace", zero_ok=True)
    if secret_stdin:
        secret = _read_secret()
        with friendly_errors():
            view = with_services(
                load_settings(config),
                lambda s: s.service_credentials.rotate_to(credential_id, secret, grace=period),
            )
        _print_adopted(view, output, "rotated")
        return
    with friendly_errors():
        created = with_services(
            load_settings(config),
            lambda s: s.service_credentials.rotate(credential_id, grace=period),
        )
    _print_created(created, output, "rotated")


@service_credentials_app.command("revoke")
def service_credentials_revoke(
    credential_id: CredentialIdArgument,
    config: ConfigOption = None,
) -> None:
    """Revoke a service credential: its next call is refused."""
    with friendly_errors():
        with_services(load_settings(config), lambda s: s.service_credentials.revoke(credential_id))
    out.print(f"service credential {credential_id} revoked")
