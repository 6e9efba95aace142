"""``authgate signing-keys ...``: the JWT signing key ring."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from authgate.cli.console import ConfigOption, friendly_errors, load_settings, out
from authgate.cli.output import add_row, print_table, stamp, table
from authgate.container import load_signing_keys
from authgate.exceptions import ConfigurationError
from authgate.services.signing_keys import SigningKeyFile

signing_keys_app = typer.Typer(help="Manage the JWT signing keys.", no_args_is_help=True)


@signing_keys_app.command("list")
def signing_keys_list(config: ConfigOption = None) -> None:
    """Show the keys in the key ring (no key material)."""
    with friendly_errors():
        key_file, ring = load_signing_keys(load_settings(config))
    rows = table("kid", "algorithm", "created", "state")
    for key in ring.keys:
        if key is ring.active:
            state = "active"
        elif key.staged:
            state = "staged"
        else:
            state = f"retired {stamp(key.retired_at)}"
        add_row(rows, key.kid, key.algorithm, stamp(key.created_at), state)
    print_table(rows)
    if key_file is None:
        out.print("HS512 mode: the shared secret is configured, not stored by authgate.")


Stage = Annotated[
    bool,
    typer.Option(
        "--stage",
        help="Add a key that verifies now and signs from the next rotation: give every "
        "node the file between the two.",
    ),
]


@signing_keys_app.command("rotate")
def signing_keys_rotate(config: ConfigOption = None, stage: Stage = False) -> None:
    """Start signing with a new key (the staged one, if a key is staged); old keys keep
    verifying until their tokens expire."""
    with friendly_errors():
        settings = load_settings(config)
        key_file, current = load_signing_keys(settings)
        if not isinstance(key_file, SigningKeyFile):
            raise ConfigurationError("HS512 secrets are rotated by changing AUTHGATE_JWT_SECRET")
        longest = max(settings.tokens.ttl, settings.tokens.remember_me_ttl)
        ring = key_file.rotate(keep_for=longest + timedelta(minutes=5), stage=stage)
    staged = ring.staged_key
    if stage and staged is not None:
        out.print(
            f"staged key {staged.kid} ({staged.algorithm}): it verifies once a server has "
            "this file (its /.well-known/jwks.json lists it) and signs from the next "
            "`authgate signing-keys rotate`; give every node the file before that"
        )
        return
    new, old = ring.active.algorithm, current.active.algorithm
    came = " (the staged one)" if current.staged_key is not None else ""
    out.print(
        f"new active key {ring.active.kid} ({new}){came}; running servers pick it up "
        "within a second"
    )
    if new != old:
        # The algorithm comes from this shell's settings, not from the file.
        out.print(
            f"note: the active key was {old}, the new one is {new} (AUTHGATE_JWT_ALGORITHM "
            "here); run this command with the servers' settings to keep theirs"
        )
