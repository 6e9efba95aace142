"""``authgate cluster ...``: the secrets every node shares, and who is running."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from authgate.cli.console import (
    ConfigOption,
    err,
    friendly_errors,
    load_settings,
    out,
    with_services,
)
from authgate.cli.output import add_row, print_table, stamp, table
from authgate.container import Services
from authgate.exceptions import ConfigurationError
from authgate.security.signing_keys import AsymmetricAlgorithm
from authgate.services.cluster import NodeInfo, describe
from authgate.storage import keystore

cluster_app = typer.Typer(help="Run several nodes as one deployment.", no_args_is_help=True)

PEPPER_FILE = "api-key-pepper"
AUDIT_KEY_FILE = "audit-key"
TFA_KEY_FILE = "tfa-key"
SIGNING_KEYS_FILE = "signing-keys.json"


@cluster_app.command("init")
def cluster_init(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the shared secrets (created, mode 0700).")
    ],
    algorithm: Annotated[
        str, typer.Option(help="JWT signing algorithm: ES256 or EdDSA.")
    ] = "ES256",
) -> None:
    """Create the API key pepper, audit key, second-factor key and signing key ring every
    node must share."""
    with friendly_errors():
        if algorithm not in ("ES256", "EdDSA"):
            raise ConfigurationError("--algorithm must be ES256 or EdDSA")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        pepper, audit_key = directory / PEPPER_FILE, directory / AUDIT_KEY_FILE
        ring, tfa_key = directory / SIGNING_KEYS_FILE, directory / TFA_KEY_FILE
        for path in (pepper, audit_key, tfa_key, ring):
            if path.exists():
                raise ConfigurationError(f"{path} exists already: nodes may be using it")
        keystore.create_pepper_file(pepper)
        keystore.create_secret_file(audit_key)
        keystore.create_secret_file(tfa_key)
        asymmetric: AsymmetricAlgorithm = "EdDSA" if algorithm == "EdDSA" else "ES256"
        keystore.load_or_create_keyring(ring, asymmetric, now=datetime.now(UTC))
    out.print(
        f"created {pepper}, {audit_key}, {tfa_key} and {ring} (mode 0600). "
        "Give every node the same files:"
    )
    settings = (
        "AUTHGATE_CLUSTER=true",
        f"AUTHGATE_API_KEY_PEPPER_FILE={pepper.resolve()}",
        f"AUTHGATE_AUDIT_KEY_FILE={audit_key.resolve()}",
        f"AUTHGATE_TFA_KEY_FILE={tfa_key.resolve()}",
        f"AUTHGATE_SIGNING_KEYS_FILE={ring.resolve()}",
        f"AUTHGATE_JWT_ALGORITHM={algorithm}",
        "AUTHGATE_DATABASE_URL=postgresql+asyncpg://...   AUTHGATE_REDIS_URL=redis://...",
    )
    for line in settings:
        # One line each, copied into an environment file: never wrapped at the
        # terminal's (or a pipe's 80) columns, nor a path read as markup.
        out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


@cluster_app.command("status")
def cluster_status(config: ConfigOption = None) -> None:
    """List the running nodes and anything their configurations disagree on."""

    async def nodes(services: Services) -> list[NodeInfo]:
        assert services.cluster is not None  # built by build_services
        return await services.cluster.nodes()

    with friendly_errors():
        live = with_services(load_settings(config), nodes)
    rows = table("node", "version", "started", "last seen", "signs with", "redis")
    for node in live:
        add_row(
            rows,
            f"{node.hostname} (pid {node.pid})",
            node.version,
            stamp(node.started_at),
            stamp(node.last_seen_at),
            node.active_kid,
            "yes" if node.uses_redis else "no",
        )
    if live:
        print_table(rows)
    else:
        out.print("no node is running")
    problems = describe(live)
    for problem in problems:
        err.print(f"[red]problem:[/red] {problem}")
    if problems:
        raise typer.Exit(1)
