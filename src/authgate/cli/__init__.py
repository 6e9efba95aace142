"""The server's command line: ``authgate serve|migrate|users|keys|signing-keys|service-credentials|
audit|cluster|import``.

Commands call the same services the REST API calls; nothing here holds a rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from authgate.cli import console
from authgate.cli.audit import audit_app
from authgate.cli.cluster import cluster_app
from authgate.cli.imports import import_app
from authgate.cli.keys import keys_app
from authgate.cli.server import server_commands
from authgate.cli.service_credentials import service_credentials_app
from authgate.cli.signing_keys import signing_keys_app
from authgate.cli.users import users_app

app = typer.Typer(
    help="authgate: self-hosted API authentication (JWT bearer tokens and API keys).",
    no_args_is_help=True,
    # An unexpected error must not print the frames' variables: they may hold a password
    # read from standard input, or the rows of a UTMStack import (plaintext API keys).
    pretty_exceptions_show_locals=False,
)


@app.callback()
def global_options(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="The installation's data directory (else AUTHGATE_DATA_DIR, else "
            "./authgate-data).",
        ),
    ] = None,
    init: Annotated[
        bool,
        typer.Option(
            "--init",
            help="Create the data directory if it does not exist (commands other than "
            "`serve` refuse to, so that a wrong directory never starts a new installation).",
        ),
    ] = False,
) -> None:
    """authgate: self-hosted API authentication (JWT bearer tokens and API keys)."""
    console.options = console.CommandLineOptions(data_dir=data_dir, init=init)


app.registered_commands += server_commands.registered_commands
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(signing_keys_app, name="signing-keys")
app.add_typer(service_credentials_app, name="service-credentials")
app.add_typer(audit_app, name="audit")
app.add_typer(cluster_app, name="cluster")
app.add_typer(import_app, name="import")


def main() -> None:
    app()


__all__ = ["app", "main"]
